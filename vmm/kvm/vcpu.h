// Vcpu: one virtual CPU — its KVM file descriptor, the shared kvm_run page, and
// the register state helpers the loaders and the fault report use.
// Threading: KVM_RUN and the register ioctls must come from the thread that runs
// the vCPU; only request_exit() may be called from other threads.
#pragma once

#include "base/fd.h"
#include "base/result.h"
#include "vmm/kvm/vm.h"

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace strata {

class Vcpu {
public:
    [[nodiscard]] static Result<std::unique_ptr<Vcpu>> create(Vm& vm, std::uint32_t index);
    ~Vcpu();
    Vcpu(Vcpu const&) = delete;
    Vcpu& operator=(Vcpu const&) = delete;

    std::uint32_t index() const { return m_index; }
    int fd() const { return m_fd.get(); }
    kvm_run& run_state() { return *m_run; }

    // Installs CPUID: the supported set with this vCPU's APIC id in leaves 0x1,
    // 0xB and 0x1F, and the hypervisor bit set.
    [[nodiscard]] Status set_cpuid(std::vector<kvm_cpuid_entry2> entries, std::uint32_t vcpu_count);
    // Programs the local APIC's LINT0 as ExtINT and LINT1 as NMI (virtual-wire
    // mode), which the PIC needs to reach the BSP and which Linux expects.
    [[nodiscard]] Status setup_lapic();
    // Puts the vCPU in 32-bit protected mode with flat segments and paging off, at
    // `entry`, with %ebx = start_info: the PVH boot ABI.
    [[nodiscard]] Status setup_pvh_entry(std::uint32_t entry, std::uint32_t start_info);

    [[nodiscard]] Result<kvm_regs> get_regs() const;
    [[nodiscard]] Status set_regs(kvm_regs const& regs);
    [[nodiscard]] Result<kvm_sregs> get_sregs() const;
    [[nodiscard]] Status set_sregs(kvm_sregs const& sregs);
    [[nodiscard]] Status set_msrs(std::vector<kvm_msr_entry> const& msrs);

    // One KVM_RUN. Returns false (not an error) when interrupted by a signal or by
    // request_exit(); the caller then checks why.
    [[nodiscard]] Result<bool> run();
    // Makes the current or next KVM_RUN return promptly; any thread may call it.
    void request_exit();
    // Re-enters KVM with immediate_exit set, so KVM finishes the instruction of the
    // last port or MMIO exit (an IN's destination register, a string I/O's
    // pointers) and returns at once without running the guest. A vCPU parked for a
    // snapshot does this first, or its saved state would sit mid-instruction.
    [[nodiscard]] Status complete_pending_exit();
    // Undoes request_exit() for a vCPU that was parked rather than stopped.
    void clear_exit_request();
    // Remembers the pthread that runs this vCPU, so request_exit can kick it.
    void bind_to_current_thread();

    // A multi-line dump of the general and control registers, for fault reports.
    std::string dump_registers() const;

    // The signal used to kick vCPU threads out of KVM_RUN; installed once per process.
    static void install_kick_signal();

private:
    Vcpu(std::uint32_t index, Fd fd, kvm_run* run, std::size_t run_size)
        : m_index(index)
        , m_fd(std::move(fd))
        , m_run(run)
        , m_run_size(run_size)
    {
    }

    std::uint32_t m_index;
    Fd m_fd;
    kvm_run* m_run;
    std::size_t m_run_size;
    std::atomic<unsigned long> m_thread { 0 };
};

} // namespace strata
