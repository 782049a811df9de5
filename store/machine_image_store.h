// Store operations on machine images that need no running VMM: capturing a
// stopped VM, making a VM's disks from a machine image (O(1): a fresh empty top
// layer over the image's frozen layers per disk, so the time does not depend on
// the disks' size), deleting an image, and (machine_image_archive.cpp) export
// and import as one portable archive.
//
// Disks made over a machine image's layers are written as ordinary store disk
// manifests (manifest.h's ObjectManifest, encoded by encode_object) under the
// record lock, which is the Store's own lock: Store has no public call that
// clones from an arbitrary layer list, and a disk over a machine image's layers
// is exactly what Store::create_disk_from makes over an image's.
//
// Threading: any thread; serialized across processes by the store lock.
#pragma once

#include "store/machine_image.h"
#include "store/manifest.h"
#include "imaging/store_io.h"

#include <functional>
#include <optional>

namespace strata {

// What `vms create --source-machine-image` may override (absent: the image's).
// From a generalized image, metadata must be given with a non-empty hostname or
// user (the guest provisions itself from it) and the VM gets a new instance id.
struct VmOverrides {
    std::optional<std::uint32_t> vcpus;
    std::optional<std::uint64_t> memory_mib;
    std::optional<std::string> cmdline;
    std::optional<std::string> description;
    std::optional<std::map<std::string, std::string>> labels;
    std::optional<std::map<std::string, std::string>> metadata;
    // Replaces the network interfaces (tap names are a host's; a VM made on
    // another host needs its own). Interfaces without a MAC get a new one.
    std::optional<std::vector<VmNet>> nets;
    // Replaces the metadata service (disabled: none); empty interfaces mean every
    // interface the VM ends up with. Without it, a VM whose interfaces nets
    // replaced keeps its service's version and address on all the new ones.
    std::optional<VmMmds> mmds;
    // A VM from a machine image gets new MACs unless this is set.
    bool keep_macs { false };
};

// Sets what overrides gives (vCPUs, memory, cmdline, description, labels,
// metadata, interfaces, metadata service) on vm and leaves the rest.
void apply_overrides(VmRecord& vm, VmOverrides const& overrides);

// A new store disk named name over layers (bottom..top, all frozen; may be
// empty). Its writable top of size bytes is made now when layers is empty or
// top_now; otherwise at its first writable open. Exclusive record lock held.
[[nodiscard]] Result<ObjectManifest> create_disk_over_layers(RecordLock const& held, std::string const& name,
    std::vector<LayerId> const& layers, std::uint64_t size, std::string const& source, bool top_now = false);

// Captures a VM that is not running: freezes each non-scratch disk's top layer
// and pushes a new empty one (as a snapshot does), then records the image. The
// fields of `image` that come from the caller: name, description, labels.
// A disk some process has open (a running VM) makes it fail with Busy.
[[nodiscard]] Result<MachineImageRecord> capture_stopped_vm(Store& store, VmRecord const& vm, MachineImageRecord image);

// A new VM record and its disks ("<vm>-disk-<id>") from a machine image. The
// image's spec, mapping, source VM labels/metadata and generalized flag are
// inherited, then the overrides applied. On failure the disks made so far are
// removed again.
[[nodiscard]] Result<VmRecord> create_vm_from_machine_image(Store& store, std::string const& vm_name, std::string const& image,
    VmOverrides const& overrides);

// Deletes the record, then collects the layers and artifacts nothing names.
[[nodiscard]] Status delete_machine_image(Store& store, std::string const& name);

// Machine image export/import (machine_image_archive.cpp). The archive holds the
// record (archive metadata), one disk entry "disk-<id>" per non-scratch disk with
// its whole layer chain, one blob "artifact-<digest>" per boot artifact, and for
// a running-state image its state and memory layers.
// Import verifies the whole archive before anything enters the store, gives the
// layers new IDs, and writes the record last; a corrupted archive imports nothing.
// A running-state image also carries its state and memory layers (see
// machine_image_archive.cpp); import checks them with `check_state` (given the
// folder rebuilt in tmp/ and the guest's RAM size; the VMM's knowledge of the
// state format, vmm/image_memory.h's check_state_folder) and refuses such an
// archive without one.
using CheckMachineState = std::function<Status(std::filesystem::path const& dir, std::uint64_t memory_bytes)>;
[[nodiscard]] Status export_machine_image(Store& store, std::string const& name, std::string const& file, int level = 1,
    ProgressFn const& progress = {});
[[nodiscard]] Result<MachineImageRecord> import_machine_image(Store& store, std::string const& name, std::string const& file,
    ProgressFn const& progress = {}, CheckMachineState const& check_state = {});

} // namespace strata
