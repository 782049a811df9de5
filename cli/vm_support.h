// What the `strata vms`, `instance-templates` and `machine-images` commands share:
// opening the store with its record folders, error reporting, --labels/--metadata
// parsing, and the runtime state of a VM (is its VMM running; where are its API
// socket, serial log and pid), plus starting and stopping that VMM.
// Threading: main thread only (CLI).
#pragma once

#include "base/result.h"
#include "store/store.h"
#include "store/vm_record.h"
#include "vmm/disk_config.h"
#include "vmm/api/client.h"
#include "vmm/runtime_dir.h"

#include <map>
#include <memory>
#include <optional>
#include <vector>
#include <string>
#include <sys/types.h>

namespace strata::cli {

// Prints "strata: <message>" on stderr; returns the sysexits code.
int vm_fail(Error const& e);

// Opens the store at $STRATA_HOME (with the record folders) and runs fn with it.
template<typename F>
int with_vm_store(F&& fn)
{
    auto store = Store::open(Store::default_root());
    if (!store)
        return vm_fail(store.error());
    if (auto dirs = ensure_record_dirs(store.value()->root()); !dirs)
        return vm_fail(dirs.error());
    return fn(*store.value());
}

// --labels / --metadata values, checked.
[[nodiscard]] Result<std::map<std::string, std::string>> parse_labels(std::string const& text);
[[nodiscard]] Result<std::map<std::string, std::string>> parse_metadata(std::string const& text);

struct VmRuntime {
    RuntimePaths paths;
    pid_t pid { 0 };      // from the pid file; 0 when none
    bool running { false }; // that pid is alive and is a `strata vmm` process
    bool api_ready { false }; // the API socket answers GET /
};

VmRuntime vm_runtime(Store const& store, std::string const& vm);

// Spawns `<this binary> vmm --vm NAME` detached (its own session, stdin from
// /dev/null, stdout/stderr appended to vmm.log in the runtime folder) and waits
// up to 10 s for its API socket to answer. A running VM is left alone. A VMM
// that exits 0 before its API answers ran its guest to the end: that is a
// successful start (running is false in the result).
// A suspended VM is refused unless `resume` (vms resume), which in turn needs a
// suspended VM.
// How `vms start`/`resume` start the VMM: jailed (vmm/isolation/jail.h) unless
// --no-jail, as --jail-uid/--jail-gid when given (empty: the caller's ids).
struct VmmLaunch {
    bool jail { true };
    std::string jail_uid, jail_gid;
};
[[nodiscard]] Result<VmRuntime> start_vm(Store const& store, std::string const& vm, bool& already_running, bool resume = false,
    VmmLaunch const& launch = {});

// `vms suspend`: asks the VM's VMM to save its state and end (PUT /vm/suspend)
// and waits until it has ended with the record saying suspended.
[[nodiscard]] Status suspend_vm(Store const& store, std::string const& vm);

// Asks the guest to shut down (SendCtrlAltDel) and waits up to timeout_s for the
// VMM to exit, then SIGTERM (2 s more) and SIGKILL. force: SIGKILL at once.
[[nodiscard]] Status stop_vm(Store const& store, std::string const& vm, bool force, unsigned timeout_s);

// `vms create`'s arguments (optional ones empty when not given).
struct VmCreateArgs {
    std::string name, image, template_name, machine_image;
    std::string firmware, kernel, initrd;
    std::optional<std::string> cmdline, description;
    std::optional<std::uint32_t> vcpus;
    std::optional<std::uint64_t> memory_mib;
    std::vector<std::string> disks;
    std::string labels, metadata;
    bool labels_given { false }, metadata_given { false };
    std::string transport, cpu_template, boot_protocol;
    // --source-machine-image REF --lazy: pulled lazily from a registry first
    // (into the machine image NAME-source), over plain HTTP with --insecure.
    bool lazy { false }, insecure { false };
    std::vector<std::string> nets; // --net tap=NAME[,mac=M][,id=ID]
    std::optional<std::string> mmds; // --mmds V1|V2[,ip=..][,iface=..]... | off
    bool keep_mac { false };       // --keep-mac: a VM from a template or machine image keeps its MACs
};

// --net values (vmm/net_config.h) as a record's interfaces; MACs stay empty
// where none was given.
[[nodiscard]] Result<std::vector<VmNet>> parse_vm_nets(std::vector<std::string> const& specs);

// --mmds of vms create / instance-templates create: "off" (none), or
// V1|V2[,ip=169.254.x.y][,iface=ID]...; without iface= the list stays empty,
// which apply_overrides reads as every interface of the VM. Whether the ids
// exist is checked with the whole spec (check_spec).
[[nodiscard]] Result<VmMmds> parse_vm_mmds(std::string const& spec);
// What a VM or template with these interfaces gets without --mmds: V2 at
// 169.254.169.254 on every interface; none without interfaces.
VmMmds default_vm_mmds(std::vector<VmNet> const& nets);

// Records a VM (vm_create.cpp): from flags, an image, a template or a machine
// image. Returns what was recorded.
[[nodiscard]] Result<VmRecord> create_vm(Store& store, VmCreateArgs const& args);

// A `--disk` of an instance template or of `vms create`: "size=S,id=D[,...]"
// (a new disk) when it has a size= key; otherwise nullopt.
// Either may carry rate limit keys (vmm/disk_config.h: bps=, iops=, bw_*=,
// ops_*=, rate_limit_group=).
struct NewDiskSpec {
    std::string id;
    std::uint64_t size { 0 };
    bool read_only { false }, boot { false }, scratch { false };
    std::string cache { "none" };
    RateLimiterConfig rate_limit;
    std::string rate_limit_group;
};
[[nodiscard]] Result<std::optional<NewDiskSpec>> parse_new_disk(std::string const& spec, unsigned index);
// A `--disk id=D` with rate limit keys only (no store disk, no size=): the limit
// of disk D that the VM gets from its image or template ("boot" is the boot
// disk); otherwise nullopt.
struct DiskLimitSpec {
    std::string id;
    RateLimiterConfig rate_limit;
    std::string rate_limit_group;
};
[[nodiscard]] Result<std::optional<DiskLimitSpec>> parse_disk_limit(std::string const& spec);
// A DiskConfig with only an id and a rate limit: what share_rate_limit_groups
// (vmm/disk_config.h) reads, for disks of records and templates.
DiskConfig limit_only(std::string const& id, RateLimiterConfig const& limit, std::string const& group);

// An API reply with a 4xx/5xx status as an Error (504 -> Timeout, 409 -> Busy,
// 404 -> NotFound, other 4xx -> Usage, 5xx -> Io), prefixed with the VM's name.
[[nodiscard]] Error api_error(std::string const& vm, api::ApiResponse const& reply);

// PUT /agent on a running VM: one command to its guest agent; returns the agent's
// reply line (JSON text).
[[nodiscard]] Result<std::string> agent_command(Store const& store, std::string const& vm, std::string const& cmd,
    std::optional<unsigned> timeout_s, unsigned wait_ms);

// Connects the terminal to the VM's serial console until Ctrl-] or the VM ends.
[[nodiscard]] Status attach_console(Store const& store, std::string const& vm);

} // namespace strata::cli
