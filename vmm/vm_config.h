// The VMM's side of VM records (store/vm_record.h) and machine images
// (store/machine_image.h): turning a VM record into the MachineConfig the
// Machine is built from (boot artifacts resolved to their files in the store),
// and a live capture (vmm/capture.h, through VmmController) into a machine image
// record written with record_machine_image.
//
// What `strata vmm --vm NAME` does with it:
//   auto store = Store::open(Store::default_root());
//   auto vm = load_vm(*store, name);                       // store/vm_record.h
//   auto config = machine_config_for(*store, vm);          // this header
//   VmmController controller(name, config, io,
//       [&](Machine&, MachineImageCapture const& c) { return record_vm_capture(*store, vm, c); });
//
// Threading: pure functions; record_vm_capture takes the store's lock itself and
// runs on whichever thread captures (the API's worker thread).
#pragma once

#include "store/machine_image.h"
#include "store/vm_record.h"
#include "vmm/machine_config.h"
#include "vmm/vmm_controller.h"

namespace strata {

class Store;

// The MachineConfig of a VM record: firmware/kernel/initrd are the artifact
// files (artifacts/<digest>), disks are the record's store disks, interfaces
// with their limiters, and the metadata service. For a kernel, the command line
// gets guest_metadata_arg(vm) appended. Fails with NotFound when an artifact is
// missing.
[[nodiscard]] Result<MachineConfig> machine_config_for(Store const& store, VmRecord const& vm);

// `strata.meta=<base64 of JSON>`, the guest agent's provisioning data
// (guest-tools/agent/provision.h): {"instance_id", "hostname", "user",
// "ssh_authorized_keys": [...]} from the VM's instance id and its metadata keys
// hostname, user and ssh-authorized-keys (several keys separated by ';').
// Fails (Usage) when it would take more than MaxMetadataArgBytes.
// A VM with a metadata service gets `strata.mmds=<its address>` instead: the
// agent reads the same data from the service (guest-tools/README.md).
inline constexpr std::size_t MaxMetadataArgBytes = 1536;
[[nodiscard]] Result<std::string> guest_metadata_arg(VmRecord const& vm);

// What a VM's metadata service serves when its VMM starts (PUT /mmds replaces
// it later), the same for every start of the VM:
//   {"latest": {"meta-data": {"instance-id": I, "local-hostname": H}},
//    "strata": {"instance-id": I, "name": VM, "metadata": {every --metadata key: value}}}
// EC2's two keys for tools that read IMDS; local-hostname only when the
// metadata has a hostname. I is the instance id (the VM's name in records older
// than instance ids).
std::string mmds_data_for(VmRecord const& vm);

// The machine image record of a live capture of vm: the VM's spec, mapping,
// labels and metadata, each captured disk's frozen layers (disk sizes from the
// store), the request's name, description and labels, the capture time and stall.
[[nodiscard]] Result<MachineImageRecord> machine_image_from_capture(Store& store, VmRecord const& vm, MachineImageCapture const& capture);

// machine_image_from_capture, then record_machine_image: the RecordImage callback
// of VmmController for a VM from the store.
[[nodiscard]] Status record_vm_capture(Store& store, VmRecord const& vm, MachineImageCapture const& capture);

} // namespace strata
