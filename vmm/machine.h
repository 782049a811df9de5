// The vmm/ folder: running one VM. kvm/ wraps KVM (Kvm, Vm, Vcpu, the ABI, guest
// RAM, interrupts, CPU templates); boot/ puts a guest into RAM (the ELF and PVH
// loaders, Linux boot, ACPI tables); api/ is the REST API. At the top is the
// orchestration: the Machine (machine.cpp builds and boots it, machine_run.cpp
// runs its threads, machine_exits.cpp dispatches port and MMIO exits), its disks,
// the controller the API drives, capture and the runtime folder. vmm/ depends on
// devices/, store/, imaging/ and base/; the strata CLI (cli/) depends on vmm/.
//
// Machine: one VM and everything it owns — the KVM VM, guest RAM, vCPUs and their
// threads, the buses and devices. Ownership is a tree (STYLE.md point 5): the
// Machine owns all of it through unique_ptr and tears it down in reverse order,
// vCPU threads first, so no device outlives the memory it points into.
//
// A machine restored as a clone with new MACs (Machine::restore) asks the guest
// agent, from a thread of its own while it runs, to move the guest's interfaces
// to them, and logs the outcome on stderr.
// A Machine runs once: run() starts the vCPUs and returns when the guest writes
// the exit port, resets, triple-faults, hits a fatal KVM error, or stop() is
// called (a signal). Reboot-and-restart is the caller's loop, building a new
// Machine from the same config.
// Besides the disks, every VM has a virtio-console (attached after the disks)
// whose host side is the AgentChannel to the guest agent, and the boot-complete
// port (devices/legacy/boot_timer.h): the first guest write of 123 to port 0x3f0
// is recorded as microseconds since create() began and logged once to stderr.
// Threading: create() and run() on one thread (the main thread); stop() from any
// thread; agent(), boot_complete_us() and console_metrics() from any thread; the
// vCPU and input threads are private.
#pragma once

#include "base/fd.h"
#include "base/result.h"
#include "devices/bus.h"
#include "vmm/machine_config.h"
#include "vmm/memory_file.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

struct kvm_run;
struct kvm_cpuid_entry2;

namespace strata::virtio::net {
class MmdsStore;
}

namespace strata {

class Kvm;
struct MachineState;
class Vm;
class Vcpu;
class GuestRam;
class VmPreparation;
class Serial;
class I8042;
class CmosRtc;
class DebugExit;
class MachineDisks;
class MachineNets;
class PreparedNets;
class BootTimer;
class AgentChannel;
struct VirtioSlot;
namespace pci {
class PciBus;
}
namespace virtio::console {
class VirtioConsole;
struct ConsoleMetrics;
}

struct MachineExit {
    enum class Kind {
        GuestExit,   // the guest wrote `value` to the exit port
        Reset,       // i8042 reset or a KVM system-event reset
        PowerOff,    // a KVM system-event shutdown
        TripleFault, // KVM_EXIT_SHUTDOWN, a reset on a PC; details holds the registers
        Stopped,     // stop() was called
        Failed,      // a KVM error or an emulation failure; details says which
    };
    Kind kind { Kind::Stopped };
    std::uint32_t value { 0 };
    std::string details;
};

// How a KVM_EXIT_SYSTEM_EVENT of the given type ends the machine: a shutdown is
// a power-off, a reset a reset, and every other type (a crash reported through
// the Hyper-V crash MSRs, an SEV termination, a wake-up or suspend strata never
// asked for) a failure whose details name the event, never a clean end.
[[nodiscard]] MachineExit exit_for_system_event(std::uint32_t type);

struct MachineIo {
    // A constructor rather than an aggregate, so that callers that name only the
    // serial ends stay as they are.
    MachineIo(int out = 1, int in = 0, std::shared_ptr<virtio::net::MmdsStore> store = {})
        : serial_out(out)
        , serial_in(in)
        , mmds(std::move(store))
    {
    }
    int serial_out { 1 }; // where the guest's serial output goes
    int serial_in { 0 };  // where its serial input comes from; -1 for none
    // The metadata service's data store, filled through the VMM's API; the
    // interfaces MachineConfig::mmds names serve it. Null: no metadata service.
    std::shared_ptr<virtio::net::MmdsStore> mmds;
    // A VM being made ahead of time (prepared_vm.h), for create() or restore()
    // to use when it fits the configuration; null: they make their own.
    std::shared_ptr<VmPreparation> prepared;
    // netns=auto interfaces whose namespace and tap were made before the VMM
    // was jailed (prepared_nets.h): the machine uses their taps rather than
    // making namespaces. Null, or an interface not in it: the machine makes them.
    std::shared_ptr<PreparedNets const> prepared_nets;
};

class Machine {
public:
    [[nodiscard]] static Result<std::unique_ptr<Machine>> create(MachineConfig const& config, MachineIo io);
    // Builds the machine of `config` in the state a snapshot saved (save_snapshot)
    // instead of booting it: RAM is the memory file mapped copy-on-write, then the
    // VM-wide KVM state, every vCPU, the legacy devices and every virtio transport
    // are put back, so run() continues the guest where it was. The config must
    // match the snapshot (vCPUs, memory, transport, the number of disks, the
    // network interfaces and their ids) and its disks must hold what the VM's
    // disks held at the snapshot. Network interfaces open the taps (or make the
    // netns=auto namespaces) the config names and present the saved MAC, which
    // the running guest's driver uses, unless the config gives another: a
    // clone's own MAC, which the device then presents and which run() asks the
    // guest agent to move the guest's interface to. The metadata service's saved data goes into io.mmds when
    // that store is still empty. Refused with nothing run: another host CPU or
    // state version (Unsupported, 78), a state or memory file that is
    // truncated, corrupt or does not match the VM (BadInput, 65).
    [[nodiscard]] static Result<std::unique_ptr<Machine>> restore(MachineConfig const& config, MachineIo io,
        std::filesystem::path const& state_file, std::filesystem::path const& memory_file);
    // The same from an encoded MachineState and a chain of memory files: the
    // first whole, each later one differential over those below (memory_file.h).
    // Every file is checked against its checksum, the last against the state's,
    // before anything runs; RAM is the first file mapped copy-on-write with the
    // later files' pages copied over it. With config.track_dirty_pages the
    // restored machine logs dirty pages from here on.
    [[nodiscard]] static Result<std::unique_ptr<Machine>> restore(MachineConfig const& config, MachineIo io,
        std::span<std::byte const> state_bytes, std::span<MemoryLayer const> memory);

    // Saves the machine into a state file and a memory file (machine_state.h,
    // memory_file.h), both new. The vCPUs must be paused (pause_vcpus) and the
    // disks' queues too (disks().pause_all()), so neither the guest nor a device
    // changes RAM meanwhile; the guest agent must be idle (the console is not
    // paused). Only the non-zero pages of RAM are written.
    [[nodiscard]] Status save_snapshot(std::filesystem::path const& state_file, std::filesystem::path const& memory_file);
    // What save_memory_and_state saved: the encoded MachineState (its
    // memory_crc is the memory file's) and, for a differential memory file, the
    // pages it holds.
    struct SavedSnapshot {
        std::vector<std::byte> state;
        MemoryLayer memory;
    };
    // The parts of save_snapshot, for callers that keep the state in a file of
    // their own (the Firecracker-shaped PUT /snapshot/create). diff: write only
    // the pages written since the last save or restore (the machine must track
    // dirty pages); otherwise every non-zero page. Either way, with tracking the
    // dirty log starts again from here, even when the save fails (the caller
    // must then not lay a Diff over the previous snapshot).
    [[nodiscard]] Result<SavedSnapshot> save_memory_and_state(std::filesystem::path const& memory_file, bool diff);
    // Before run(): the vCPUs start parked (state Paused) until resume_vcpus().
    void start_paused();
    bool tracks_dirty_pages() const;
    // Starts dirty page tracking from now on (GuestRam::start_dirty_tracking),
    // with the vCPUs parked; nothing if the machine tracks them already.
    [[nodiscard]] Status start_dirty_tracking();
    // Gives the VM a new generation ID (the VMGenID device in the DSDT: 16
    // random bytes at layout::vmgenid_guid) and pulses the ACPI GED's line, so
    // a guest driver is notified. Every VM made from a running-state snapshot
    // calls it before its vCPUs run, so clones of one snapshot differ (Linux
    // reseeds its RNG on the notification). Returns the new ID in hex.
    // A booting machine gets its first ID with notify false: no edge on the GED's
    // line before the guest has set up its interrupt controllers.
    [[nodiscard]] Result<std::string> new_generation_id(bool notify = true);
    ~Machine();
    Machine(Machine const&) = delete;
    Machine& operator=(Machine const&) = delete;

    // Runs the guest until it ends; see MachineExit.
    [[nodiscard]] MachineExit run();
    // Asks a running machine to stop; safe from any thread and from signal context
    // is NOT promised (use a signalfd or a self-pipe to call it).
    void stop();

    // Holds every vCPU outside KVM_RUN (and returns once they are), or lets them go.
    void pause_vcpus();
    void resume_vcpus();
    bool vcpus_paused() const;
    // Presses Ctrl-Alt-Del on the i8042 keyboard (IRQ 1): a Linux guest reboots or
    // shuts down; a firmware guest ignores it.
    void send_ctrl_alt_del();
    MachineDisks& disks() { return *m_disks; }
    // The VM's network interfaces (none: count() == 0).
    MachineNets& nets() { return *m_nets; }
    // The client of the guest agent on the VM's virtio-console.
    AgentChannel& agent() { return *m_agent; }
    virtio::console::ConsoleMetrics console_metrics() const;
    // Microseconds from create() to the guest's boot-complete write, once it came.
    std::optional<std::uint64_t> boot_complete_us() const;
    MachineConfig const& config() const { return m_config; }

private:
    Machine();
    [[nodiscard]] static Result<std::unique_ptr<Machine>> open_shell(MachineConfig const& config, MachineIo io);
    // KVM, the VM and its RAM of config.memory_mib (prepared_vm.h): io.prepared's
    // when it fits, made here otherwise.
    [[nodiscard]] Status take_prepared_vm(MachineIo const& io);
    [[nodiscard]] Status boot(MachineConfig const& config);
    // The devices every VM has, and its disks and console; appends what Linux
    // needs to find them to cmdline.
    [[nodiscard]] Status attach_devices(MachineConfig const& config, std::string& cmdline);
    [[nodiscard]] Status restore_state(struct MachineState const& state);
    [[nodiscard]] static Result<std::unique_ptr<Machine>> restore_checked(MachineConfig const& config, MachineIo io,
        MachineState const& state, std::span<MemoryLayer const> memory);
    [[nodiscard]] Status attach_console(std::string& cmdline);
    // The DSDT's devices: COM1, and the virtio-mmio regions or the PCI host bridge.
    std::vector<std::byte> dsdt_body(MachineConfig const& config) const;
    [[nodiscard]] Status boot_linux(MachineConfig const& config, std::string const& cmdline, std::uint64_t rsdp,
        std::vector<kvm_cpuid_entry2> const& cpuid);
    void vcpu_loop(Vcpu& vcpu);
    void input_loop();
    // A restored clone whose interfaces have MACs of their own (MachineNets::
    // mac_changes): asks the guest agent to move the guest's interfaces to them
    // (set-macs), again while no agent answers, for up to MacAnnounceWindow,
    // and logs what came of it; a move the agent reports is what snapshots
    // save from then on (MachineNets::guest_moved). Runs on its own thread
    // from run() until it has an answer, gives up, or the machine ends.
    void announce_new_macs();
    static constexpr std::chrono::seconds MacAnnounceWindow { 120 };
    // Records the first exit reason and wakes run(); later ones are ignored.
    void finish(MachineExit exit);
    bool handle_io(kvm_run& run);
    bool handle_mmio(kvm_run& run);

    MachineConfig m_config;
    MachineIo m_io;
    std::unique_ptr<Kvm> m_kvm;
    std::unique_ptr<Vm> m_vm;
    std::unique_ptr<GuestRam> m_ram;
    Bus m_pio { "port bus" };
    Bus m_mmio { "MMIO bus" };
    std::unique_ptr<Serial> m_serial;
    std::unique_ptr<I8042> m_i8042;
    std::unique_ptr<CmosRtc> m_rtc;
    std::unique_ptr<DebugExit> m_exit_port;
    std::unique_ptr<BootTimer> m_boot_timer;
    std::unique_ptr<pci::PciBus> m_pci; // virtio-pci VMs only
    std::unique_ptr<MachineDisks> m_disks;
    std::unique_ptr<AgentChannel> m_agent; // the console's sink; outlives it
    std::unique_ptr<virtio::console::VirtioConsole> m_console;
    std::unique_ptr<VirtioSlot> m_console_slot;
    std::unique_ptr<MachineNets> m_nets; // after the console in virtio order
    std::chrono::steady_clock::time_point m_created {};
    std::atomic<std::int64_t> m_boot_complete_us { -1 };
    std::vector<std::unique_ptr<Vcpu>> m_vcpus;
    std::vector<std::thread> m_threads;
    std::thread m_input_thread;
    std::thread m_mac_thread; // announce_new_macs
    // Writes a freshly decompressed kernel to the kernel cache while the guest boots.
    std::thread m_kernel_cache_writer;
    Fd m_done_event;  // eventfd: an exit reason was recorded
    Fd m_input_stop;  // eventfd: the input thread should return
    std::atomic<bool> m_finished { false };
    mutable std::mutex m_pause_lock;
    std::condition_variable m_pause_cv;
    bool m_pause_requested { false };
    std::uint32_t m_vcpus_parked { 0 };
    MachineExit m_exit;
};

} // namespace strata
