// PreparedVm: the KVM half of a machine — /dev/kvm open, the VM created, its RAM
// mapped (anonymous, MAP_NORESERVE) and registered in KVM's memory slots, the
// interrupt controllers and PIT made — and VmPreparation, which makes one on a
// thread of its own while the VMM goes on with the rest of its start.
//
// Why ahead of time: these few ioctls spend most of their time asleep in the
// kernel, not working — KVM_SET_USER_MEMORY_REGION and KVM_CREATE_IRQCHIP wait
// for SRCU grace periods, KVM_CREATE_PIT2 for kthreadd to start the PIT's worker
// — 5-15 ms of a restore's 8-14 ms on a loaded 2-CPU host (perf sched_switch
// stacks of a restoring VMM). Started as soon as a stored VM's VMM knows its
// memory size, the waits overlap its console relay, its API socket and the
// reading and checking of the saved state. Machine::create and Machine::restore
// take a PreparedVm that fits their configuration (MachineIo::prepared) and
// make one in line otherwise. A restore then lays the memory file over the
// prepared RAM (GuestRam::map_file): KVM's slots name the address, not the
// mapping.
//
// Threading: VmPreparation::start on the thread that will own the machine;
// take() on that same thread, once. The PreparedVm belongs to whoever took it.
// The preparing thread has every signal blocked and ends once the VM is made;
// a stored VM's VMM starts it before seccomp's spawner (cli/vmm_command.cpp).
#pragma once

#include "base/result.h"
#include "vmm/kvm/guest_ram.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vm.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <thread>

namespace strata {

struct PreparedVm {
    std::unique_ptr<Kvm> kvm;
    std::unique_ptr<Vm> vm;   // refers to *kvm
    std::unique_ptr<GuestRam> ram; // registered in *vm; zero pages until written
    bool track_dirty { false };
};

// Makes one now, on the calling thread: /dev/kvm (or $STRATA_KVM_DEVICE), the
// VM, `memory_bytes` of RAM in its slots (logging dirty pages when
// track_dirty), then the interrupt controllers — in that order (vm.h says why).
[[nodiscard]] Result<PreparedVm> prepare_vm(std::uint64_t memory_bytes, bool track_dirty);

class VmPreparation {
public:
    // Starts prepare_vm on a thread of its own (start_thread, ThreadKind::Vmm).
    [[nodiscard]] static std::shared_ptr<VmPreparation> start(std::uint64_t memory_bytes, bool track_dirty);
    ~VmPreparation();
    VmPreparation(VmPreparation const&) = delete;
    VmPreparation& operator=(VmPreparation const&) = delete;

    // Waits for the thread and hands over what it made when it fits (the same
    // memory size and dirty tracking); nullopt when it does not fit, was taken
    // already, or failed (the caller then prepares in line, and so meets the
    // failure itself, e.g. a missing /dev/kvm, with its own context).
    [[nodiscard]] std::optional<PreparedVm> take(std::uint64_t memory_bytes, bool track_dirty);

    // Microseconds the preparation took on its thread, and how long take()
    // waited for it: what the VMM logs beside a restore's time.
    std::uint64_t prepare_us() const { return m_prepare_us; }
    std::uint64_t waited_us() const { return m_waited_us; }

private:
    VmPreparation(std::uint64_t memory_bytes, bool track_dirty)
        : m_memory_bytes(memory_bytes)
        , m_track_dirty(track_dirty)
    {
    }
    std::uint64_t m_memory_bytes;
    bool m_track_dirty;
    std::thread m_thread;
    std::optional<Result<PreparedVm>> m_result; // written by the thread before it ends
    std::uint64_t m_prepare_us { 0 };
    std::uint64_t m_waited_us { 0 };
    bool m_taken { false };
};

} // namespace strata
