// VmmController: the VMM process's side of the REST API (api::VmController). It
// holds the configuration until InstanceStart (Firecracker's pre-boot requests
// build it up), creates the Machine on start, and afterwards forwards pause,
// resume, Ctrl-Alt-Del, metrics and captures to the running Machine. Host paths
// a client names (path_on_host, boot files) are checked at their PUT and again
// at InstanceStart; one that cannot be used is the client's error (Usage, 400).
//
// The Machine runs on the process's main thread (run_until_exit); the API's worker
// thread only creates it and then hands it over, so the main thread owns its
// lifetime. Captures need the store; a VMM started on host files alone refuses them.
// A machine-image capture records the image through `record_image`, supplied by
// whoever knows the VM's identity (the `strata vmm --vm` command), which also
// supplies `check_image`: asked before any disk is paused, it refuses a name the
// record would refuse (invalid or taken), so that a refused capture changes
// nothing — no frozen layer, no stalled guest.
//
// Guest flush (a machine image with guest_flush): before the capture the agent is
// asked to freeze its file systems (timeout_s FreezeTimeoutS, so a VMM that dies
// cannot leave the guest frozen for long) and given guest_flush_wait_ms for its
// reply; after the capture, to thaw. The capture happens in every case; the
// result says "quiesced" only when the freeze was acknowledged and the thaw
// reported no auto-thaw, otherwise "not-quiesced: <reason>".
// Generalize: once the agent has acknowledged `generalize` (PUT /agent), the VM's
// end by reset or power-off is its generalization; generalized_on_exit() says so
// to the `strata vmm --vm` command, which then marks the VM record.
// Threading: the api::VmController methods run on the API's worker thread;
// run_until_exit and request_stop on the main thread (request_stop from any).
#pragma once

#include "vmm/api/controller.h"
#include "vmm/capture.h"
#include "vmm/image_memory.h"
#include "vmm/machine.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace strata {

struct MachineImageCapture {
    api::MachineImageRequest request;
    // With request.memory: where the state and memory files were written
    // (machine_state_dir); the recorder removes them if it cannot record.
    std::filesystem::path state_dir;
    CaptureOutcome outcome;
    std::string captured_at; // UTC, ISO 8601
    std::string guest_flush; // with request.guest_flush: "quiesced" or "not-quiesced: <reason>"
};

class VmmController final : public api::VmController {
public:
    using RecordImage = std::function<Status(Machine&, MachineImageCapture const&)>;
    using CheckImage = std::function<Status(std::string const& name)>;

    // `configured` says the config is complete (a VM from the store), so start()
    // may boot at once; otherwise the API builds it up first.
    VmmController(std::string id, MachineConfig config, MachineIo io, RecordImage record_image = {}, CheckImage check_image = {});
    ~VmmController() override;

    // Boots now (for a VM whose configuration came with it).
    [[nodiscard]] Status start();
    // Makes start() restore the machine from a running-state snapshot (Machine::
    // restore) instead of booting it. `restored` runs once the restored machine
    // exists and before any vCPU runs (the VM record forgets its saved state
    // there, since the guest's disks move on from then); if it fails, the machine
    // is dropped and start() fails with its error.
    struct RestoreSource {
        std::filesystem::path state_file;
        std::filesystem::path memory_file;
        std::function<Status()> restored;
        std::string what; // for the log line: "machine-image:NAME", "suspended"
        // A clone of a snapshot (not the same VM resumed): it gets a new VM
        // generation ID (Machine::new_generation_id) before it runs.
        bool new_generation { false };
    };
    void restore_on_start(RestoreSource source) { m_restore = std::move(source); }
    // Where suspend() saves the VM (state_dir: the state and memory files) and
    // how it records the VM as suspended (record_suspended, called once the
    // files are complete; the VM is ended only after it succeeded). Without
    // it, suspend is refused.
    struct SuspendTarget {
        std::filesystem::path state_dir;
        std::function<Status()> record_suspended;
    };
    void suspend_into(SuspendTarget target) { m_suspend = std::move(target); }
    // Waits for the Machine (started here or through the API) and runs it until the
    // guest ends or request_stop(); returns nullopt if stopped before any start.
    std::optional<MachineExit> run_until_exit();
    void request_stop();

    Result<api::InstanceInfo> instance_info() override;
    Result<api::VmConfigView> vm_config() override;
    Result<api::VmMetrics> metrics() override;
    Status set_boot_source(api::BootSource const& source) override;
    Status set_machine_config(api::MachineSettings const& settings) override;
    Status put_drive(api::DriveConfig const& drive) override;
    Status update_drive(api::DriveUpdate const& update) override;
    Status put_network_interface(api::NetworkInterfaceConfig const& net) override;
    Status update_network_interface(api::NetworkInterfaceUpdate const& update) override;
    Status put_mmds(api::MmdsPut const& request) override;
    Status patch_mmds(api::MmdsPatch const& request) override;
    Result<std::string> get_mmds() override;
    Status set_mmds_config(api::MmdsConfigRequest const& request) override;
    Status start_instance() override;
    Status send_ctrl_alt_del() override;
    Status pause() override;
    Status resume() override;
    Result<api::CaptureResult> snapshot_disks(api::SnapshotDisksRequest const& request) override;
    Result<api::CaptureResult> create_machine_image(api::MachineImageRequest const& request) override;
    Result<api::AgentAnswer> agent_command(api::AgentCommand const& command) override;
    // One cut, as a running-state capture: every queue held and drained, the
    // vCPUs parked, memory and device state saved into a fresh folder next to
    // state_dir, every disk's top frozen (which makes its writes durable) under
    // a new empty top; then the folder replaces state_dir, the VM is recorded
    // suspended, and the machine stops with its queues still held. Any failure
    // before the record resumes the VM as it was and leaves no files.
    Status suspend() override;
    // Firecracker's snapshot API (vmm/snapshot_file.h: the file and where strata
    // departs). Create: the VM must be paused; its disk queues are drained for
    // the cut, its writable drives copied beside the snapshot file, its memory
    // written whole or as a Diff over the previous snapshot's chain, then the
    // snapshot file; any failure removes every file it made and leaves the VM
    // paused as it was. Load: into a VMM with nothing configured; every file is
    // checked before the machine is built, and a refused load leaves the VMM
    // unconfigured.
    Status create_snapshot(api::SnapshotCreateRequest const& request) override;
    Status load_snapshot(api::SnapshotLoadRequest const& request) override;

    // True when the agent acknowledged generalize and the machine then ended by a
    // guest reset or power-off (call after run_until_exit).
    bool generalized_on_exit(MachineExit const& exit) const;

    static constexpr std::uint64_t FreezeTimeoutS = 10;

private:
    // Creates and hands over the Machine (start() and start_instance()).
    [[nodiscard]] Status create_machine();
    Machine* running();
    // Freezes through the agent, runs capture, thaws; returns the capture's status
    // and sets flush_state.
    Status capture_with_guest_flush(Machine& m, std::uint64_t wait_ms, std::function<Status()> const& capture,
        std::string& flush_state);

    std::string m_id;
    MachineConfig m_config;
    MachineIo m_io;
    RecordImage m_record_image;
    CheckImage m_check_image;
    std::mutex m_lock;
    std::condition_variable m_cv;
    std::unique_ptr<Machine> m_machine;
    bool m_started { false };
    bool m_stop { false };
    std::optional<std::uint64_t> m_last_stall_us;
    std::optional<RestoreSource> m_restore;
    // For the VMM's log: what a VM prepared ahead (MachineIo::prepared) saved.
    std::string prepared_note() const;
    std::optional<SuspendTarget> m_suspend;
    std::optional<std::uint64_t> m_restore_us; // how long Machine::restore took
    // The memory files of the last snapshot this VM was created or loaded from,
    // bottom first: what a Diff is layered on. Empty: only a Full can be made.
    std::vector<MemoryLayer> m_memory_chain;
    // The last machine image this VMM captured with memory: the next memory
    // capture is a differential layer over its chain (image_memory.h). Reset
    // whenever the dirty log is taken for anything else, or a capture fails.
    std::optional<ImageMemory> m_image_memory;
    std::atomic<bool> m_generalize_acknowledged { false };
};

} // namespace strata
