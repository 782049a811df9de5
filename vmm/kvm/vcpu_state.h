// VcpuState: the complete architectural state KVM keeps for one x86 vCPU, as a
// running-state snapshot saves and restores it — general, segment and control
// registers, the FPU/SSE/AVX area (XSAVE), XCR0, the local APIC page, every MSR
// KVM reports (TSC, kvm-clock, SYSENTER, syscall, PAT, the TSC deadline, ...),
// the multiprocessing state, pending events (exceptions, NMIs, interrupt shadow)
// and the debug registers.
//
// Order matters (it follows the dependencies inside KVM, the same order
// Firecracker and Cloud Hypervisor use): saving reads the MP state first, since
// reading it makes KVM process pending APIC events, and the pending events last;
// restoring writes the segment and control registers (which hold the APIC base)
// before the local APIC, the MSRs after the APIC, with the TSC first among them
// and the TSC deadline last (the deadline is measured against the TSC), and the
// pending events last.
//
// Threading: save and restore use the vCPU's ioctls from the calling thread; the
// vCPU must be outside KVM_RUN (parked by Machine::pause_vcpus, or not yet
// started), and its last port or MMIO exit must have been completed
// (Vcpu::complete_pending_exit), or the saved registers would sit in the middle
// of an instruction.
#pragma once

#include "base/result.h"

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace strata {

class Kvm;
class Vcpu;

struct VcpuState {
    kvm_mp_state mp_state {};
    kvm_regs regs {};
    kvm_sregs sregs {};
    std::vector<std::byte> xsave; // KVM_GET_XSAVE(2): at least 4096 bytes
    kvm_xcrs xcrs {};
    kvm_debugregs debugregs {};
    kvm_lapic_state lapic {};
    std::vector<kvm_msr_entry> msrs;
    kvm_vcpu_events events {};
};

// A TSC-deadline timer that fired just as the vCPU stopped reads 0 (KVM clears
// the MSR when it fires) while its interrupt may not be in the saved LAPIC yet:
// restored as 0, the guest's timer never fires again and a Linux guest stops
// scheduling (Firecracker saw restored guests stop answering). This sets a zero
// deadline to the TSC saved beside it, so the timer fires at once after the
// restore; a guest takes a timer interrupt with nothing due as a spurious tick,
// and KVM ignores the MSR when the LAPIC timer is not in TSC-deadline mode.
// Nothing changes when either MSR is missing or the deadline is armed.
void rearm_fired_tsc_deadline(std::vector<kvm_msr_entry>& msrs);

// The MSRs a snapshot saves: KVM_GET_MSR_INDEX_LIST (hardware and KVM's
// emulated MSRs, kvm-clock's among them).
[[nodiscard]] Result<std::vector<std::uint32_t>> snapshot_msr_indices(Kvm const& kvm);
// The XSAVE buffer size this host's KVM uses (KVM_CAP_XSAVE2, at least 4096),
// or 0 for a kernel without KVM_GET_XSAVE2 (the legacy 4 KiB area).
[[nodiscard]] Result<std::size_t> xsave_size(Kvm const& kvm);

// Reads the vCPU's state. MSRs in `msr_indices` that this vCPU does not have
// (KVM refuses them) are left out.
[[nodiscard]] Result<VcpuState> save_vcpu_state(Vcpu const& vcpu, std::vector<std::uint32_t> const& msr_indices,
    std::size_t xsave_bytes);
// Writes a saved state into a vCPU created with the same CPUID.
[[nodiscard]] Status restore_vcpu_state(Vcpu& vcpu, VcpuState const& state);

} // namespace strata
