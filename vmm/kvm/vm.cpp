#include "vmm/kvm/vm.h"

#include "vmm/kvm/kvm_abi.h"

#include <cstring>
#include <vector>

namespace strata {

Result<std::unique_ptr<Vm>> Vm::create(Kvm const& kvm)
{
    STRATA_TRY(fd, STRATA_KVM_IOCTL(kvm.fd(), KVM_CREATE_VM, 0));
    Fd owned(fd);
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_TSS_ADDR, tss_address));
    std::uint64_t identity = identity_map_address;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_IDENTITY_MAP_ADDR, &identity));
    return std::unique_ptr<Vm>(new Vm(kvm, std::move(owned)));
}

Status Vm::add_interrupt_controllers()
{
    if (m_irqchip)
        return make_error(ErrorKind::Internal, "the VM has its interrupt controllers already");
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_CREATE_IRQCHIP, 0));
    kvm_pit_config pit {};
    // The speaker dummy flag lets the guest probe port 0x61 without a userspace exit.
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_CREATE_PIT2, &pit));
    m_irqchip = true;
    return ok();
}

Status Vm::map_memory(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, void* host, bool log_dirty)
{
    kvm_userspace_memory_region region {};
    region.slot = slot;
    region.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
    region.guest_phys_addr = gpa;
    region.memory_size = size;
    // SAFETY: KVM takes the mapping's host address as a 64-bit integer; host is the
    // start of size bytes the caller keeps mapped for as long as the slot exists.
    region.userspace_addr = reinterpret_cast<std::uint64_t>(host);
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_SET_USER_MEMORY_REGION, &region));
    return ok();
}

Status Vm::get_dirty_log(std::uint32_t slot, std::span<std::uint64_t> bitmap)
{
    // KVM fills a bitmap of its own size, so read it into a scratch buffer of the
    // caller's size (the caller sized it for the slot) and OR it in.
    std::vector<std::uint64_t> scratch(bitmap.size());
    kvm_dirty_log log {};
    log.slot = slot;
    log.dirty_bitmap = scratch.data();
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_GET_DIRTY_LOG, &log));
    for (std::size_t i = 0; i < bitmap.size(); ++i)
        bitmap[i] |= scratch[i];
    return ok();
}

Status Vm::set_irq_line(std::uint32_t gsi, bool level)
{
    kvm_irq_level irq {};
    irq.irq = gsi;
    irq.level = level ? 1 : 0;
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_IRQ_LINE, &irq));
    return ok();
}

Status Vm::add_irqfd(int eventfd, std::uint32_t gsi)
{
    kvm_irqfd irqfd {};
    irqfd.fd = static_cast<std::uint32_t>(eventfd);
    irqfd.gsi = gsi;
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_IRQFD, &irqfd));
    return ok();
}

Status Vm::remove_irqfd(int eventfd, std::uint32_t gsi)
{
    kvm_irqfd irqfd {};
    irqfd.fd = static_cast<std::uint32_t>(eventfd);
    irqfd.gsi = gsi;
    irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_IRQFD, &irqfd));
    return ok();
}

static kvm_ioeventfd make_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t length, bool pio, std::optional<std::uint64_t> datamatch)
{
    kvm_ioeventfd io {};
    io.fd = eventfd;
    io.addr = addr;
    io.len = length;
    if (pio)
        io.flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (datamatch) {
        io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
        io.datamatch = *datamatch;
    }
    return io;
}

Status Vm::add_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t length, bool pio, std::optional<std::uint64_t> datamatch)
{
    auto io = make_ioeventfd(eventfd, addr, length, pio, datamatch);
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_IOEVENTFD, &io));
    return ok();
}

Status Vm::remove_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t length, bool pio, std::optional<std::uint64_t> datamatch)
{
    auto io = make_ioeventfd(eventfd, addr, length, pio, datamatch);
    io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_IOEVENTFD, &io));
    return ok();
}

Status Vm::signal_msi(std::uint64_t address, std::uint32_t data)
{
    kvm_msi msi {};
    msi.address_lo = static_cast<std::uint32_t>(address);
    msi.address_hi = static_cast<std::uint32_t>(address >> 32);
    msi.data = data;
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_SIGNAL_MSI, &msi));
    return ok();
}

Result<std::uint32_t> Vm::add_msi_route(std::uint64_t address, std::uint32_t data)
{
    std::lock_guard guard(m_routes_lock);
    std::uint32_t gsi = m_next_gsi++;
    m_msi_routes.push_back(MsiRoute { gsi, address, data });
    STRATA_TRY(commit_routes());
    return gsi;
}

Status Vm::set_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data)
{
    std::lock_guard guard(m_routes_lock);
    for (auto& r : m_msi_routes) {
        if (r.gsi == gsi) {
            r.address = address;
            r.data = data;
            return commit_routes();
        }
    }
    return make_error(ErrorKind::Internal, "no MSI route for GSI " + std::to_string(gsi));
}

Status Vm::commit_routes()
{
    // The routing KVM sets up with the irqchip sends GSI 0-15 to the PICs and GSI
    // 0-23 to the same-numbered IOAPIC pins; it is repeated here because the ioctl
    // replaces the whole table.
    std::vector<kvm_irq_routing_entry> entries;
    for (std::uint32_t gsi = 0; gsi < ioapic_pins; ++gsi) {
        if (gsi < 16) {
            kvm_irq_routing_entry pic {};
            pic.gsi = gsi;
            pic.type = KVM_IRQ_ROUTING_IRQCHIP;
            pic.u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
            pic.u.irqchip.pin = gsi % 8;
            entries.push_back(pic);
        }
        kvm_irq_routing_entry io {};
        io.gsi = gsi;
        io.type = KVM_IRQ_ROUTING_IRQCHIP;
        io.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        io.u.irqchip.pin = gsi;
        entries.push_back(io);
    }
    for (auto const& r : m_msi_routes) {
        kvm_irq_routing_entry e {};
        e.gsi = r.gsi;
        e.type = KVM_IRQ_ROUTING_MSI;
        e.u.msi.address_lo = static_cast<std::uint32_t>(r.address);
        e.u.msi.address_hi = static_cast<std::uint32_t>(r.address >> 32);
        e.u.msi.data = r.data;
        entries.push_back(e);
    }
    std::vector<std::byte> buf(sizeof(kvm_abi::IrqRoutingHeader) + entries.size() * sizeof(kvm_irq_routing_entry));
    kvm_abi::IrqRoutingHeader header { static_cast<std::uint32_t>(entries.size()), 0 };
    std::memcpy(buf.data(), &header, sizeof header);
    std::memcpy(buf.data() + sizeof header, entries.data(), entries.size() * sizeof(kvm_irq_routing_entry));
    STRATA_TRY(kvm_ioctl(m_fd.get(), kvm_abi::set_gsi_routing, "KVM_SET_GSI_ROUTING", buf.data()));
    return ok();
}

} // namespace strata
