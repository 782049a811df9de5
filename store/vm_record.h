// VM records ($STRATA_HOME/vms/<name>.json): what a VM in the store is made of.
//
// Where these types live, and why here. The store (store/, between vmm/ and
// imaging/) knows what a VM is made of but not how it runs, and must hold and
// check the records that name its layers, disks and boot artifacts, since its
// garbage collection reads them. So the records are plain, store-level data:
// numbers, store names, artifact digests and enumerated words kept as validated
// strings ("mmio"|"pci", "none"|"writeback"|"unsafe", ...). Nothing here loads a
// kernel or builds a device: vmm/vm_config.h turns a VmRecord into the VMM's
// MachineConfig. The same MachineSpec (CPUs, memory, boot source by digest, CPU
// template, transport) is shared by VM records, instance templates
// (template_record.h) and machine images (machine_image.h).
//
// Parsers treat their text as hostile: every field is type-, range- and
// name-checked (store names, artifact digests, labels, metadata) and the record's
// own name must match its file's.
//
// Threading: value types and pure functions; the load/save functions take the
// record lock (record_files.h) and may be called from any thread.
#pragma once

#include "base/rate_limiter.h"
#include "base/result.h"
#include "store/record_files.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace strata {

inline constexpr std::uint32_t kMaxRecordVcpus = 254;
inline constexpr std::uint64_t kMinRecordMemoryMib = 8;
inline constexpr std::uint64_t kMaxRecordMemoryMib = 1ULL << 20; // 1 TiB
inline constexpr std::size_t kMaxRecordDisks = 64;
inline constexpr std::size_t kMaxRecordNets = 8;

// Boot artifacts by digest (64 lowercase hex digits of the SHA-256 of the file,
// stored at artifacts/<digest>). Exactly one of firmware and kernel is set.
struct BootSpec {
    std::string firmware;
    std::string kernel;
    std::string initrd;
    std::string cmdline;
    std::string boot_protocol { "auto" }; // auto | pvh | linux
};

// One network interface: the mapping only (which host tap, which guest MAC,
// which limits), never the tap's own state. Recorded as Firecracker names the
// fields; the limiters as Firecracker's rx_rate_limiter/tx_rate_limiter
// ({"bandwidth": {"size", "one_time_burst", "refill_time"}, "ops": {...}},
// refill_time in ms), written only when they limit something.
struct VmNet {
    std::string id;            // "iface_id": 1-20 of A-Z a-z 0-9 - _ .
    std::string host_dev_name; // the host tap's name; empty with netns_auto
    std::string guest_mac;     // "xx:xx:xx:xx:xx:xx" lower case; empty: each VM gets a new one
    bool netns_auto { false }; // "netns": "auto": a namespace of its own at each start
    RateLimiterConfig rx_limit {}; // guest-bound traffic; unlimited by default
    RateLimiterConfig tx_limit {}; // guest-sent traffic
    bool operator==(VmNet const&) const = default;
};

// The metadata service (MMDS) of a VM: which of its interfaces serve it, its
// version and address; recorded as "mmds": {"version": "V1"|"V2",
// "ipv4_address": "169.254.x.y", "network_interfaces": [ids]} (Firecracker's PUT
// /mmds/config), absent when the VM has none. What it serves is made from the
// record at each start (vmm/vm_config.h mmds_data_for), never stored here.
struct VmMmds {
    std::string version;                      // "V1" | "V2"; empty: no metadata service
    std::string ipv4_address { "169.254.169.254" };
    std::vector<std::string> interfaces;      // interface ids, each one of the spec's
    bool enabled() const { return !version.empty(); }
    bool operator==(VmMmds const&) const = default;
};

struct MachineSpec {
    std::uint32_t vcpus { 1 };
    std::uint64_t memory_mib { 128 };
    BootSpec boot;
    std::string cpu_template { "host" }; // host | minimal
    std::string transport { "mmio" };    // mmio | pci
    std::vector<VmNet> nets;             // "network_interfaces", in guest order
    VmMmds mmds;                         // "mmds"
};

// One disk of a VM: always a disk of the store.
struct VmDisk {
    std::string id;   // the guest-visible serial: 1-20 of A-Z a-z 0-9 - _ .
    std::string disk; // the store disk's name
    bool read_only { false };
    bool boot { false };
    bool scratch { false };
    std::string cache { "none" }; // none | writeback | unsafe
    bool owned { false };         // created for this VM (<vm>-disk-<id>); deleted with it
    // Applied at each start (vmm/disk_config.h): the disk's rate limit, and the
    // rate limit group whose one limiter it shares with the VM's other disks of
    // the group (each of them records the group's limit).
    RateLimiterConfig rate_limit {};
    std::string rate_limit_group {};
};

struct VmRecord {
    std::string name;
    MachineSpec spec;
    std::vector<VmDisk> disks;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> metadata;
    std::string description;
    std::string created; // UTC, ISO 8601
    std::string source;  // "flags", "image:I", "template:T", "machine-image:M"
    // Set once `vms generalize` removed the guest's identity and the VM ended; a
    // generalized VM is not started again (capture it, then boot new VMs).
    bool generalized { false };
    // The guest instance's identity ("i-" + 16 hex digits), given to a kernel
    // guest in strata.meta= (first-boot provisioning runs once per id). New for a
    // VM created from flags, a template or a generalized machine image; kept from
    // the source VM for a specialized one. Empty in records older than the field.
    std::string instance_id;
    // What the VM's next start does: empty, boot it; otherwise restore it from the
    // state and memory files in vm_state_dir (vmm/machine.h Machine::restore):
    // "machine-image:NAME" for a VM made from a running-state machine image that
    // has not run yet, "suspended" for a VM `vms suspend` saved. The VMM clears it
    // (and removes the files) once the restored machine exists and before its
    // guest runs: from then on the disks move on, and the saved memory no longer
    // matches them, so a later start boots.
    std::string restore_from;
    bool suspended() const { return restore_from == "suspended"; }
};

// Where a VM's own state and memory files wait for its next start:
// <store>/vm-state/<vm>/{state,memory}. For a VM from a running-state machine
// image they are hard links to the image's files (machine_state_dir), so
// creating the VM copies nothing and every such VM maps the same pages.
std::filesystem::path vm_state_dir(std::string const& store_root, std::string const& vm);

// A fresh instance id: "i-" and 16 random hex digits.
std::string new_instance_id();
// Checks an instance id: empty, or "i-" and 1..32 of [0-9a-f].
[[nodiscard]] Status check_instance_id(std::string_view id);

// The digests of the spec's boot artifacts (firmware/kernel/initrd that are set).
std::vector<std::string> boot_digests(BootSpec const& boot);

// Checks: 64 lowercase hex digits.
[[nodiscard]] Status check_digest(std::string_view digest);
// Checks a disk id (the rules of vmm/disk_config.h).
[[nodiscard]] Status check_disk_id(std::string_view id);
[[nodiscard]] Status check_cache(std::string_view cache);
// Checks network interfaces: ids, interface names, MACs, limiters; ids, taps and MACs unique.
[[nodiscard]] Status check_vm_nets(std::vector<VmNet> const& nets);
// Checks a metadata service against the interfaces: version, a link-local
// address, at least one interface, each named once and one of nets.
[[nodiscard]] Status check_vm_mmds(VmMmds const& mmds, std::vector<VmNet> const& nets);
// After the interfaces were replaced (vms create --net over a template or a
// machine image): a metadata service keeps its version and address and serves
// on every new interface, or goes when there is none.
void retarget_mmds(VmMmds& mmds, std::vector<VmNet> const& nets);
// A random locally administered unicast MAC (02:xx:xx:xx:xx:xx family), as text.
std::string new_guest_mac();
// Gives every interface a new MAC (a VM made from a machine image is a new NIC
// on the network unless told otherwise).
void renew_guest_macs(std::vector<VmNet>& nets);
// Gives a new MAC to every interface that has none (a VM's record always names
// its MACs, so the guest sees the same NIC on every start).
void fill_guest_macs(std::vector<VmNet>& nets);
// Checks every field of a spec (ranges, enumerations, digests, one boot source).
[[nodiscard]] Status check_spec(MachineSpec const& spec);
// Checks a VM's disks: ids, store names, unique ids and disks, one boot disk,
// rate limits in range and one limit per rate limit group.
[[nodiscard]] Status check_vm_disks(std::vector<VmDisk> const& disks);

nlohmann::json spec_json(MachineSpec const& spec);
[[nodiscard]] Result<MachineSpec> parse_spec(nlohmann::json const& j);
nlohmann::json vm_disk_json(VmDisk const& d);
[[nodiscard]] Result<VmDisk> parse_vm_disk(nlohmann::json const& j);

nlohmann::json vm_json(VmRecord const& vm);
std::string encode_vm(VmRecord const& vm);
[[nodiscard]] Result<VmRecord> parse_vm(std::string_view text);
// The VMs that use store disk `disk`, read without taking the record lock: for
// Store::remove, which already holds the store's lock (the same lock file).
[[nodiscard]] Result<std::vector<std::string>> vms_using_disk(std::string const& store_root, std::string const& disk);
// Refuses (Busy) when a suspended VM other than `except_vm` uses store disk
// `disk`: a suspended VM's memory holds what its guest knows of its disks, so
// nothing else may open them (read-only either: the VM may resume meanwhile)
// or change them until it resumes or is deleted. Reads the records without the
// record lock, as vms_using_disk does, and only those of the VMs with a saved
// state folder (vm_state_dir), the only ones that can be suspended.
[[nodiscard]] Status refuse_if_suspended_vm_disk(std::string const& store_root, std::string const& disk, std::string const& except_vm = {});

// Store I/O. load_vm(Store&, ...) takes the record lock itself (shared) — what
// `strata vmm --vm NAME` calls; the others run under a lock the caller holds.
[[nodiscard]] Result<VmRecord> load_vm(Store& store, std::string const& name);
[[nodiscard]] Result<VmRecord> load_vm(RecordLock const& held, std::string const& name);
[[nodiscard]] Result<std::vector<VmRecord>> list_vms(RecordLock const& held);
// Saves a checked record (exclusive lock); with must_be_new, an existing VM makes
// it fail (Exists). Every boot artifact it names must already be in the store.
[[nodiscard]] Status save_vm(RecordLock const& held, VmRecord const& vm, bool must_be_new);
// Copies the boot files given (empty paths are skipped) into the store's
// artifacts and names them in boot by digest, so no host path enters a record.
// Exclusive lock held.
[[nodiscard]] Status put_boot_artifacts(RecordLock const& held, BootSpec& boot, std::string const& firmware,
    std::string const& kernel, std::string const& initrd);

} // namespace strata
