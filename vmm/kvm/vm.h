// Vm: one KVM virtual machine — its file descriptor, guest memory slots, the
// in-kernel interrupt controllers and PIT, and the eventfd plumbing (ioeventfd,
// irqfd, MSI routes) that lets devices run without userspace exits.
// Threading: created on the main thread; the ioctls it issues are safe from any
// thread (KVM serializes them), so devices' threads may call irq_line/signal_msi.
#pragma once

#include "base/fd.h"
#include "base/result.h"
#include "vmm/kvm/kvm.h"

#include <cstdint>
#include <memory>
#include <span>
#include <mutex>
#include <optional>
#include <vector>

namespace strata {

class Vm {
public:
    // Creates the VM and sets the TSS and identity-map addresses inside the 32-bit
    // MMIO hole where no RAM lives. It has no interrupt controllers yet: the
    // caller maps guest RAM (map_memory) and then calls add_interrupt_controllers,
    // in that order, before any vCPU.
    [[nodiscard]] static Result<std::unique_ptr<Vm>> create(Kvm const& kvm);

    // The in-kernel IOAPIC/PIC/LAPIC (KVM_CREATE_IRQCHIP) and a PIT
    // (KVM_CREATE_PIT2). Called after the RAM slots are registered: a
    // stand-alone program issuing these ioctls (15 VMs per order, a 2-CPU host
    // at load 8-16) saw KVM_SET_USER_MEMORY_REGION wait 7.5-13.7 ms (median) for
    // the kernel's SRCU grace period when it came after the irqchip and PIT, and
    // 0.07 ms right after KVM_CREATE_VM. (In the VMM part of that wait can land
    // on the next ioctl that synchronizes instead; prepared_vm.h keeps the whole
    // sequence off the start's critical path where it can.) Vcpu::create refuses
    // a VM without them.
    [[nodiscard]] Status add_interrupt_controllers();
    bool has_interrupt_controllers() const { return m_irqchip; }

    int fd() const { return m_fd.get(); }
    Kvm const& kvm() const { return m_kvm; }

    // log_dirty sets KVM_MEM_LOG_DIRTY_PAGES on the slot: KVM then records every
    // page a vCPU (or KVM itself, e.g. kvm-clock) writes, read by get_dirty_log.
    [[nodiscard]] Status map_memory(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, void* host, bool log_dirty = false);
    // KVM_GET_DIRTY_LOG: ORs the slot's pages written since the last call into
    // `bitmap` (one bit per page, the slot's first page at bit 0; at least
    // ceil(pages / 64) words) and clears KVM's log. Only for a logging slot.
    [[nodiscard]] Status get_dirty_log(std::uint32_t slot, std::span<std::uint64_t> bitmap);
    // Drives an interrupt line of the in-kernel PIC/IOAPIC (edge: raise then lower).
    [[nodiscard]] Status set_irq_line(std::uint32_t gsi, bool level);
    // Binds an eventfd to a GSI: a write to the eventfd injects the interrupt.
    [[nodiscard]] Status add_irqfd(int eventfd, std::uint32_t gsi);
    [[nodiscard]] Status remove_irqfd(int eventfd, std::uint32_t gsi);
    // Routes a guest write of `length` bytes at `addr` (MMIO or port) to an eventfd,
    // optionally only when the value equals datamatch.
    [[nodiscard]] Status add_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t length, bool pio, std::optional<std::uint64_t> datamatch);
    [[nodiscard]] Status remove_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t length, bool pio, std::optional<std::uint64_t> datamatch);
    // Injects one MSI (KVM_SIGNAL_MSI).
    [[nodiscard]] Status signal_msi(std::uint64_t address, std::uint32_t data);
    // Allocates a GSI routed to an MSI message and returns it; set_msi_route updates
    // it. The full routing table (the IOAPIC pins plus every MSI route) is re-sent on
    // each change, because KVM_SET_GSI_ROUTING replaces the whole table.
    [[nodiscard]] Result<std::uint32_t> add_msi_route(std::uint64_t address, std::uint32_t data);
    [[nodiscard]] Status set_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data);

    static constexpr std::uint64_t tss_address = 0xfffbd000;
    static constexpr std::uint64_t identity_map_address = 0xfffbc000;
    static constexpr std::uint32_t ioapic_pins = 24;

private:
    Vm(Kvm const& kvm, Fd fd)
        : m_kvm(kvm)
        , m_fd(std::move(fd))
    {
    }
    [[nodiscard]] Status commit_routes();

    struct MsiRoute {
        std::uint32_t gsi;
        std::uint64_t address;
        std::uint32_t data;
    };
    Kvm const& m_kvm;
    Fd m_fd;
    std::mutex m_routes_lock;
    std::vector<MsiRoute> m_msi_routes;
    std::uint32_t m_next_gsi { ioapic_pins };
    bool m_irqchip { false };
};

} // namespace strata
