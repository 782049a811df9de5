// VmController: what the REST API asks of a VM. The API (vmm/api/) parses and
// validates a request, then calls exactly one method here; the Machine (or a test's
// fake) implements it. The API never touches the Machine any other way.
//
// The shapes follow Firecracker's API where Firecracker has the concept (boot source,
// machine config, drives, actions, pause/resume, instance info) and add strata's
// own: a crash-consistent snapshot of every disk, a machine image of the running VM,
// per-disk metrics, and commands to the guest agent.
//
// Ordering rules are the API's, not the controller's: the dispatcher reads
// instance_info().state first and refuses pre-boot requests (boot source, machine
// config, drives, InstanceStart) once the VM has started, and post-boot requests
// (SendCtrlAltDel, pause/resume, snapshot, machine image) before it has. A
// controller may still refuse anything with an Error; ErrorKind picks the HTTP status
// (dispatch.h: Usage/BadInput/Unsupported -> 400, NotFound -> 404, Exists/Busy -> 409,
// Timeout -> 504, anything else -> 500) and the message becomes the fault_message.
//
// Threading: the API server calls every method from ONE thread of its own (its
// worker thread, never the socket I/O thread), one call at a time, so a controller
// needs no locking against the API itself, only against its own threads (vCPUs,
// disk I/O). A method may block for as long as it needs (a capture drains the disk
// queues); other API requests wait behind it.
#pragma once

#include "base/rate_limiter.h"
#include "base/result.h"
#include "vmm/machine_config.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace strata::api {

// GET / "state": Firecracker's strings are "Not started", "Running", "Paused".
enum class VmState {
    NotStarted,
    Running,
    Paused,
};

// Firecracker's drive cache types. Unsafe ignores guest flushes (data reaches the
// host page cache only); Writeback honours them (flush means fdatasync).
enum class CacheType {
    Unsafe,
    Writeback,
};

// PUT /boot-source. Exactly one of kernel_image_path and firmware_path is set
// (firmware_path is strata's own: a PVH ELF guest program); both are host paths.
struct BootSource {
    std::string kernel_image_path;
    std::string firmware_path;
    std::string initrd_path; // empty: none
    std::string boot_args;   // empty: none
};

// PUT /machine-config. vcpu_count is within 1..254 and mem_size_mib is at least 8
// (the parser checks both); smt is always false (strata has no SMT topology).
struct MachineSettings {
    std::uint32_t vcpu_count { 1 };
    std::uint64_t mem_size_mib { 128 };
    CpuTemplate cpu_template { CpuTemplate::Host };
    bool smt { false };
    // Firecracker's: log the pages the guest and the devices write, which Diff
    // snapshots need (it costs the guest KVM's huge pages).
    bool track_dirty_pages { false };
};

// PUT /drives/{drive_id}. Exactly one of path_on_host (a raw or strata file on the
// host) and disk_name (a disk in the VM's store) is set. A second PUT with the same
// drive_id before boot replaces the first, as in Firecracker.
struct DriveConfig {
    std::string drive_id;
    std::string path_on_host;
    std::string disk_name;
    bool is_read_only { false };
    bool is_root_device { false };
    CacheType cache_type { CacheType::Unsafe };
    bool scratch { false }; // strata: never captured into images; the mapping is kept
    // Firecracker's rate_limiter: {"bandwidth": {"size", "one_time_burst",
    // "refill_time"}, "ops": {...}}; sizes in bytes and requests, refill_time in ms.
    RateLimiterConfig rate_limiter;
    // strata (Cloud Hypervisor's rate_limit_group): the VM's drives of one group
    // share one limiter; a drive of a group without rate_limiter takes the
    // group's, and drives that give one must agree. Empty: a limiter of its own.
    std::string rate_limit_group;
};

// PATCH /drives/{drive_id}: a new rate limit, at once, before or after boot.
struct DriveUpdate {
    std::string drive_id;
    RateLimiterConfig rate_limiter;
};

// PUT /network-interfaces/{iface_id}: a virtio-net interface over the existing
// host tap host_dev_name, with guest_mac (empty: a random one). A second PUT with
// the same iface_id before boot replaces the first, as in Firecracker.
struct NetworkInterfaceConfig {
    std::string iface_id;
    std::string host_dev_name;
    std::string guest_mac;
    // {"bandwidth": {"size", "one_time_burst", "refill_time"}, "ops": {...}}, as
    // Firecracker's; absent: unlimited.
    RateLimiterConfig rx_rate_limiter;
    RateLimiterConfig tx_rate_limiter;
};

// PATCH /network-interfaces/{iface_id}: new limiters (a direction left out keeps
// its own). Before boot it changes the configuration, after it the running device.
struct NetworkInterfaceUpdate {
    std::string iface_id;
    std::optional<RateLimiterConfig> rx_rate_limiter;
    std::optional<RateLimiterConfig> tx_rate_limiter;
};

// GET /metrics, one entry per network interface; mirrors virtio::net::NetMetrics.
struct NetInterfaceMetrics {
    std::string iface_id;
    std::uint64_t rx_packets { 0 }, rx_bytes { 0 }, tx_packets { 0 }, tx_bytes { 0 };
    std::uint64_t rx_dropped { 0 }, tx_dropped { 0 }, errors { 0 }, tx_backpressure { 0 };
    std::uint64_t rx_throttled { 0 }, tx_throttled { 0 };
    std::uint64_t mmds_rx_frames { 0 }, mmds_tx_frames { 0 }, mmds_dropped { 0 };
    std::uint64_t rx_direct { 0 };
};

// PUT /mmds and PATCH /mmds: the metadata service's data store (a JSON object,
// which the parser checked) replaced, or merged into (RFC 7396). Any time.
struct MmdsPut {
    std::string json;
};
struct MmdsPatch {
    std::string json;
};
// PUT /mmds/config (pre-boot): the interfaces that serve the metadata service,
// its version ("V1" or "V2", default V1) and address (link-local, default
// 169.254.169.254), as Firecracker's.
struct MmdsConfigRequest {
    std::vector<std::string> network_interfaces;
    bool v2 { false };
    std::uint32_t ipv4 { 0xa9fea9fe };
};

// GET /. The API adds "app_name": "strata".
struct InstanceInfo {
    std::string id; // the VM's name, or a generated ID for an anonymous VMM
    VmState state { VmState::NotStarted };
    std::string vmm_version;
};

// GET /vm/config: the configuration as it stands (before boot: as configured so far).
struct VmConfigView {
    std::optional<BootSource> boot_source; // absent until PUT /boot-source
    MachineSettings machine_config;
    std::vector<DriveConfig> drives;
    std::vector<NetworkInterfaceConfig> network_interfaces;
    std::optional<MmdsConfigRequest> mmds_config; // absent: no metadata service
};

// GET /metrics, one entry per disk; the counters mirror virtio::blk::BlkMetrics.
struct DiskMetrics {
    std::string drive_id;
    std::uint64_t requests { 0 }; // completed, successful or not
    std::uint64_t read_requests { 0 };
    std::uint64_t write_requests { 0 };
    std::uint64_t flush_requests { 0 };
    std::uint64_t discard_requests { 0 };
    std::uint64_t write_zeroes_requests { 0 };
    std::uint64_t bytes_read { 0 };
    std::uint64_t bytes_written { 0 };
    std::uint64_t errors { 0 };   // completed with a non-OK status
    std::uint64_t rejected { 0 }; // of which refused by the request parser
    std::uint64_t backpressure { 0 };
    std::uint64_t throttled { 0 }; // times a request waited for the rate limit
    // A disk over lazily pulled layers (registry/lazy.h): chunks and bytes here
    // of all, and what was fetched since the VMM opened it.
    struct Lazy {
        std::uint64_t chunks_present { 0 }, chunks_total { 0 };
        std::uint64_t bytes_present { 0 }, bytes_total { 0 };
        std::uint64_t demand_fetches { 0 }, demand_bytes { 0 };
        std::uint64_t fill_fetches { 0 }, fill_bytes { 0 };
        std::uint64_t failed_fetches { 0 };
        std::uint64_t held_requests { 0 }, eio_requests { 0 };
    };
    std::optional<Lazy> lazy;
};

// GET /metrics "console": the virtio-console the guest agent talks over
// (virtio::console::ConsoleMetrics).
struct ConsoleMetrics {
    std::uint64_t bytes_to_guest { 0 };
    std::uint64_t bytes_from_guest { 0 };
    std::uint64_t errors { 0 };          // chains the device refused
    std::uint64_t refused_bytes { 0 };   // host bytes that did not fit its buffer
    std::uint64_t discarded_bytes { 0 }; // host bytes withdrawn (agent requests that timed out unread)
};

struct VmMetrics {
    std::vector<DiskMetrics> disks;
    // Microseconds from the VM's start to the guest's boot-complete write (port
    // 0x3f0, value 123); absent until it came.
    std::optional<std::uint64_t> boot_complete_us;
    std::optional<ConsoleMetrics> console; // absent before the VM starts
    // How long the guest's disk queues were held for the last capture (snapshot or
    // machine image), from the first queue stopped to the last resumed; absent if
    // nothing was captured yet.
    std::optional<std::uint64_t> last_capture_stall_us;
    // For a VM restored from a running-state snapshot: microseconds the VMM took
    // to build it from the state and memory files (Machine::restore: files
    // checked, RAM mapped, KVM, vCPU and device state put back), until its vCPUs
    // could run. Absent for a booted VM.
    std::optional<std::uint64_t> restore_us;
    std::vector<NetInterfaceMetrics> nets;
};

// PUT /snapshot/disks: snapshot every disk of the VM at one crash-consistent instant.
// The name passed the API's name check (api::check_name).
struct SnapshotDisksRequest {
    std::string snapshot_name;
};

// PUT /machine-images: capture configuration and every disk as a machine image.
struct MachineImageRequest {
    std::string name;                          // passed api::check_name
    std::string description;                   // may be empty
    std::map<std::string, std::string> labels; // passed api::check_label
    bool guest_flush { false };                // ask the guest agent to freeze filesystems first
    // How long to wait for each of the agent's replies (freeze, thaw) with
    // guest_flush; 1..60000, default 2000.
    std::uint64_t guest_flush_wait_ms { 2000 };
    // Also capture memory, vCPUs and devices in the same cut as the disks: the
    // image records "state": "running" (Machine::save_snapshot).
    bool memory { false };
};

// PUT /snapshot/create, Firecracker's request (vmm/snapshot_file.h says where
// strata departs): on a paused VM, write its state, configuration and disk
// copies to snapshot_path and its memory to mem_file_path — every non-zero page
// (Full) or the pages written since the VM's previous snapshot (Diff). Neither
// file may exist. The VM stays paused. Answered 204.
struct SnapshotCreateRequest {
    bool diff { false };
    std::string snapshot_path;
    std::string mem_file_path;
};

// PUT /snapshot/load, Firecracker's request: into a VMM with nothing configured,
// load the VM of snapshot_path with the memory file mem_file_path (given as
// "mem_file_path" or "mem_backend": {"backend_type": "File", "backend_path"}).
// enable_diff_snapshots tracks dirty pages from then on; resume_vm runs the VM
// at once, otherwise it is Paused. Answered 204.
// Firecracker's network_overrides entry: interface iface_id of the snapshot
// opens host tap host_dev_name instead of the one the snapshot names.
struct NetworkOverride {
    std::string iface_id;
    std::string host_dev_name;
};

struct SnapshotLoadRequest {
    std::string snapshot_path;
    std::string mem_file_path;
    bool enable_diff_snapshots { false };
    bool resume_vm { false };
    std::vector<NetworkOverride> network_overrides;
};

// What a capture reports; the API answers 200 with it as JSON.
struct CaptureResult {
    std::string name;       // the snapshot's or the machine image's name
    std::uint64_t stall_us; // how long the disk queues were held
    // With guest_flush: "quiesced", or "not-quiesced: <reason>" (the capture was
    // still made; it is crash-consistent). Empty without guest_flush.
    std::string guest_flush {};
};

// PUT /agent: one command to the guest agent (guest-tools/agent/agent.h) over the
// VM's virtio-console. cmd is one of ping, freeze, thaw, generalize (the parser
// checks); timeout_s goes with freeze only (the agent's auto-thaw, 1..300);
// wait_ms is how long strata waits for the reply (1..60000, default 2000).
struct AgentCommand {
    std::string cmd;
    std::optional<std::uint64_t> timeout_s;
    std::uint64_t wait_ms { 2000 };
};

// The agent's reply line, as JSON text; ok=false when the agent refused (its
// "error" is then in error).
struct AgentAnswer {
    bool ok { false };
    std::string error;
    std::string reply_json;
};

class VmController {
public:
    virtual ~VmController() = default;

    // GET /; also read by the dispatcher before every pre/post-boot-only request.
    [[nodiscard]] virtual Result<InstanceInfo> instance_info() = 0;
    // GET /vm/config.
    [[nodiscard]] virtual Result<VmConfigView> vm_config() = 0;
    // GET /metrics.
    [[nodiscard]] virtual Result<VmMetrics> metrics() = 0;

    // Pre-boot only (the dispatcher refuses them once the VM has started).
    [[nodiscard]] virtual Status set_boot_source(BootSource const& source) = 0;
    [[nodiscard]] virtual Status set_machine_config(MachineSettings const& settings) = 0;
    [[nodiscard]] virtual Status put_drive(DriveConfig const& drive) = 0;
    [[nodiscard]] virtual Status update_drive(DriveUpdate const& update) = 0;
    // Controllers without networking refuse it.
    [[nodiscard]] virtual Status put_network_interface(NetworkInterfaceConfig const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM has no network interfaces");
    }
    // PATCH /network-interfaces/{id}: any time.
    [[nodiscard]] virtual Status update_network_interface(NetworkInterfaceUpdate const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM has no network interfaces");
    }
    // The metadata service (GET/PUT/PATCH /mmds any time, PUT /mmds/config
    // before boot); controllers without one refuse.
    [[nodiscard]] virtual Status put_mmds(MmdsPut const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM has no metadata service");
    }
    [[nodiscard]] virtual Status patch_mmds(MmdsPatch const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM has no metadata service");
    }
    // The data store as JSON text.
    [[nodiscard]] virtual Result<std::string> get_mmds()
    {
        return make_error(ErrorKind::Unsupported, "this VMM has no metadata service");
    }
    [[nodiscard]] virtual Status set_mmds_config(MmdsConfigRequest const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM has no metadata service");
    }
    // PUT /actions {"action_type": "InstanceStart"}: boots the configured VM and
    // returns once it runs (state Running), or fails and the VM stays Not started.
    [[nodiscard]] virtual Status start_instance() = 0;

    // Post-boot only (the dispatcher refuses them before InstanceStart).
    // PUT /actions {"action_type": "SendCtrlAltDel"}: asks the guest to shut down
    // (i8042 Ctrl-Alt-Del); returns without waiting for the guest.
    [[nodiscard]] virtual Status send_ctrl_alt_del() = 0;
    // PATCH /vm {"state": "Paused"|"Resumed"}; pausing a paused VM (or resuming a
    // running one) succeeds and changes nothing, as in Firecracker.
    [[nodiscard]] virtual Status pause() = 0;
    [[nodiscard]] virtual Status resume() = 0;
    [[nodiscard]] virtual Result<CaptureResult> snapshot_disks(SnapshotDisksRequest const& request) = 0;
    [[nodiscard]] virtual Result<CaptureResult> create_machine_image(MachineImageRequest const& request) = 0;
    // PUT /agent: sends the command and waits for the reply. Timeout when the
    // agent does not answer in time (the VM keeps running).
    [[nodiscard]] virtual Result<AgentAnswer> agent_command(AgentCommand const& command) = 0;
    // PUT /vm/suspend: saves the running VM's memory, vCPU and device state (one
    // cut with its disks, which are drained and flushed) where its next start
    // restores it, records the VM as suspended, and ends the VM: the VMM exits
    // once the reply is sent. Only a VM from the store can be suspended; a
    // controller without one refuses (Unsupported), which is the default.
    [[nodiscard]] virtual Status suspend()
    {
        return make_error(ErrorKind::Unsupported, "suspend needs a VM from the store (strata vms suspend)");
    }
    // PUT /snapshot/create (post-boot): see SnapshotCreateRequest. A VM that is
    // not paused, a file that exists, a Diff without dirty tracking or without
    // a previous snapshot: refused (400) with nothing written.
    [[nodiscard]] virtual Status create_snapshot(SnapshotCreateRequest const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM cannot create snapshots");
    }
    // PUT /snapshot/load (pre-boot): see SnapshotLoadRequest. A VMM with
    // anything configured, a missing, tampered or mismatched file: refused (400)
    // and the VMM stays as it was, ready for another load or a configuration.
    [[nodiscard]] virtual Status load_snapshot(SnapshotLoadRequest const&)
    {
        return make_error(ErrorKind::Unsupported, "this VMM cannot load snapshots");
    }
};

} // namespace strata::api
