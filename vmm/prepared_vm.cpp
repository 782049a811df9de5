#include "vmm/prepared_vm.h"

#include "base/thread.h"

#include <chrono>
#include <cstdlib>

namespace strata {

Result<PreparedVm> prepare_vm(std::uint64_t memory_bytes, bool track_dirty)
{
    PreparedVm out;
    out.track_dirty = track_dirty;
    // STRATA_KVM_DEVICE names another KVM device node: for tests of the missing-KVM
    // path, and for hosts that put /dev/kvm elsewhere.
    char const* kvm_path = std::getenv("STRATA_KVM_DEVICE");
    STRATA_TRY(kvm, Kvm::open(kvm_path && *kvm_path ? kvm_path : "/dev/kvm"));
    out.kvm = std::move(kvm);
    STRATA_TRY(vm, Vm::create(*out.kvm));
    out.vm = std::move(vm);
    STRATA_TRY(ram, GuestRam::create(*out.vm, memory_bytes, track_dirty));
    out.ram = std::move(ram);
    // After the RAM's slots, which then register without the kernel's long wait (vm.h).
    STRATA_TRY(out.vm->add_interrupt_controllers());
    return out;
}

std::shared_ptr<VmPreparation> VmPreparation::start(std::uint64_t memory_bytes, bool track_dirty)
{
    auto preparation = std::shared_ptr<VmPreparation>(new VmPreparation(memory_bytes, track_dirty));
    VmPreparation* self = preparation.get();
    // Every signal blocked in it: the VMM's main thread reads SIGTERM and
    // SIGINT from a signalfd, and a thread with them open would take them at
    // their default action. The thread only writes m_result and m_prepare_us;
    // take() reads them after join.
    self->m_thread = start_thread_signals_blocked(ThreadKind::Vmm, "strata-prepvm", [self] {
        auto const began = std::chrono::steady_clock::now();
        self->m_result.emplace(prepare_vm(self->m_memory_bytes, self->m_track_dirty));
        self->m_prepare_us = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
    });
    return preparation;
}

VmPreparation::~VmPreparation()
{
    if (m_thread.joinable())
        m_thread.join();
}

std::optional<PreparedVm> VmPreparation::take(std::uint64_t memory_bytes, bool track_dirty)
{
    if (m_taken)
        return std::nullopt;
    m_taken = true;
    auto const began = std::chrono::steady_clock::now();
    if (m_thread.joinable())
        m_thread.join();
    m_waited_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
    if (!m_result || !*m_result || memory_bytes != m_memory_bytes || track_dirty != m_track_dirty)
        return std::nullopt;
    PreparedVm out = std::move(m_result->value());
    m_result.reset();
    return out;
}

} // namespace strata
