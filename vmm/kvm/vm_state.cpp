#include "vmm/kvm/vm_state.h"

#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vm.h"

namespace strata {

Result<VmState> save_vm_state(Vm const& vm)
{
    VmState s;
    for (std::uint32_t chip = 0; chip < s.irqchips.size(); ++chip) {
        s.irqchips[chip].chip_id = chip;
        STRATA_TRY(STRATA_KVM_IOCTL(vm.fd(), KVM_GET_IRQCHIP, &s.irqchips[chip]));
    }
    STRATA_TRY(STRATA_KVM_IOCTL(vm.fd(), KVM_GET_PIT2, &s.pit));
    STRATA_TRY(STRATA_KVM_IOCTL(vm.fd(), KVM_GET_CLOCK, &s.clock));
    return s;
}

Status restore_vm_clock(Vm& vm, VmState const& state)
{
    // Only the clock value: the flags KVM_GET_CLOCK reported (TSC-stable, the
    // host's realtime) describe the old host's moment and KVM_SET_CLOCK would
    // reject or misapply them.
    kvm_clock_data clock {};
    clock.clock = state.clock.clock;
    STRATA_TRY(STRATA_KVM_IOCTL(vm.fd(), KVM_SET_CLOCK, &clock));
    return ok();
}

Status restore_vm_irqchips(Vm& vm, VmState const& state)
{
    for (auto const& saved : state.irqchips) {
        auto chip = saved;
        STRATA_TRY(STRATA_KVM_IOCTL(vm.fd(), KVM_SET_IRQCHIP, &chip));
    }
    auto pit = state.pit;
    STRATA_TRY(STRATA_KVM_IOCTL(vm.fd(), KVM_SET_PIT2, &pit));
    return ok();
}

} // namespace strata
