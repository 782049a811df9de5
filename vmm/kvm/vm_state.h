// VmState: the VM-wide state KVM keeps in the kernel, as a running-state
// snapshot saves it — the in-kernel interrupt controllers strata creates with
// KVM_CREATE_IRQCHIP (master PIC, slave PIC, IOAPIC; the local APICs are per vCPU,
// vcpu_state.h), the PIT (KVM_CREATE_PIT2) and the kvm-clock base (KVM_GET_CLOCK).
//
// Restore order: the clock before any vCPU's MSRs (kvm-clock's system-time MSR
// is interpreted against it), the PIC and IOAPIC before the vCPUs' local APICs
// run, and the PIT last. Machine::restore follows it.
// Threading: any thread, while no vCPU runs.
#pragma once

#include "base/result.h"

#include <linux/kvm.h>

#include <array>

namespace strata {

class Vm;

struct VmState {
    std::array<kvm_irqchip, 3> irqchips {}; // KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC
    kvm_pit_state2 pit {};
    kvm_clock_data clock {};
};

[[nodiscard]] Result<VmState> save_vm_state(Vm const& vm);
[[nodiscard]] Status restore_vm_clock(Vm& vm, VmState const& state);
[[nodiscard]] Status restore_vm_irqchips(Vm& vm, VmState const& state);

} // namespace strata
