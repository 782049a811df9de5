#include "vmm/virtio_slot.h"

#include "devices/pci/pci_bus.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/pci.h"
#include "vmm/kvm/interrupts.h"
#include "vmm/layout.h"

#include <cstdio>

namespace strata {

VirtioSlot::~VirtioSlot()
{
    // Transports first: destroying one resets its device and joins its I/O thread,
    // which may still raise the interrupts below.
    mmio.reset();
    pci.reset();
}

virtio::VirtioDevice& VirtioSlot::device() const
{
    return mmio ? mmio->device() : pci->device();
}

MmioPlacement virtio_mmio_placement(std::uint32_t index)
{
    return { layout::virtio_mmio_base + std::uint64_t { index } * layout::virtio_mmio_stride, layout::virtio_mmio_first_irq + index };
}

Result<std::unique_ptr<VirtioSlot>> attach_virtio(VirtioBuses const& buses, virtio::VirtioDevice& device,
    std::uint32_t index, std::string& cmdline_extra)
{
    auto slot = std::make_unique<VirtioSlot>();
    Vm& vm = buses.vm;
    std::vector<virtio::QueueNotifier> notifiers;
    if (buses.transport == Transport::Mmio) {
        auto const [base, gsi] = virtio_mmio_placement(index);
        if (gsi >= Vm::ioapic_pins)
            return make_error(ErrorKind::Usage, "too many virtio-mmio devices (at most "
                    + std::to_string(Vm::ioapic_pins - layout::virtio_mmio_first_irq) + ", the console included); use --transport pci");
        STRATA_TRY(irq, IrqfdLine::create(vm, gsi));
        slot->irq = std::move(irq);
        STRATA_TRY(transport, virtio::MmioTransport::create(device, buses.memory, *slot->irq, base, gsi));
        slot->mmio = std::move(transport);
        STRATA_TRY(buses.mmio.insert(*slot->mmio, base, layout::virtio_mmio_stride));
        cmdline_extra += " " + slot->mmio->cmdline_entry();
        notifiers = slot->mmio->notifiers();
    } else {
        if (!buses.pci)
            return make_error(ErrorKind::Internal, "virtio-pci device without a PCI bus");
        std::uint64_t bar = layout::pci_mmio_base + std::uint64_t { index } * virtio::PciTransport::BarSize;
        if (bar + virtio::PciTransport::BarSize > layout::pci_mmio_end)
            return make_error(ErrorKind::Usage, "too many virtio-pci devices");
        STRATA_TRY(msi, KvmMsiVectors::create(vm, static_cast<std::uint16_t>(device.num_queues() + 1)));
        slot->msi = std::move(msi);
        STRATA_TRY(transport, virtio::PciTransport::create(device, buses.memory, *slot->msi, bar, nullptr));
        slot->pci = std::move(transport);
        STRATA_TRY(buses.pci->add(*slot->pci));
        STRATA_TRY(buses.mmio.insert(*slot->pci, bar, virtio::PciTransport::BarSize));
        notifiers = slot->pci->notifiers();
        // The guest may move BAR 0: move the MMIO range and the notification
        // addresses with it.
        Vm* vmp = &vm;
        Bus* bus = &buses.mmio;
        auto* transport_ptr = slot->pci.get();
        slot->pci->set_relocation_handler([vmp, bus, transport_ptr](std::uint64_t old_base, std::uint64_t new_base) {
            if (auto r = bus->move(old_base, new_base); !r)
                std::fprintf(stderr, "strata: moving a virtio-pci BAR: %s\n", r.error().message.c_str());
            for (auto const& n : transport_ptr->notifiers()) {
                std::uint64_t old_addr = n.address - new_base + old_base;
                (void)vmp->remove_ioeventfd(n.eventfd, old_addr, n.length, false, n.datamatch);
                if (auto r = vmp->add_ioeventfd(n.eventfd, n.address, n.length, false, n.datamatch); !r)
                    std::fprintf(stderr, "strata: virtio-pci notification: %s\n", r.error().message.c_str());
            }
        });
    }
    for (auto const& n : notifiers)
        STRATA_TRY(vm.add_ioeventfd(n.eventfd, n.address, n.length, false, n.datamatch));
    return slot;
}

} // namespace strata
