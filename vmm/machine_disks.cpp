#include "vmm/machine_disks.h"

#include "devices/pci/pci_bus.h"
#include "devices/virtio/blk/device.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/pci.h"
#include "imaging/chain.h"
#include "imaging/open_image.h"
#include "imaging/raw_backend.h"
#include "imaging/store.h"
#include "vmm/interrupts.h"
#include "vmm/layout.h"

#include <cstdio>

namespace strata {

struct MachineDisks::Disk {
    DiskConfig config;
    std::unique_ptr<BlockBackend> backend;
    Chain* chain { nullptr }; // backend, when it is a store disk's chain
    std::unique_ptr<virtio::blk::VirtioBlk> device;
    std::unique_ptr<IrqfdLine> irq;
    std::unique_ptr<KvmMsiVectors> msi;
    std::unique_ptr<virtio::MmioTransport> mmio;
    std::unique_ptr<virtio::PciTransport> pci;
};

MachineDisks::~MachineDisks()
{
    // Transports first: destroying one resets its device and joins its I/O thread.
    for (auto& d : m_disks) {
        d->mmio.reset();
        d->pci.reset();
    }
    m_disks.clear();
}

Result<std::unique_ptr<MachineDisks>> MachineDisks::create(Vm& vm, GuestMemory const& memory, Bus& pio, Bus& mmio,
    std::vector<DiskConfig> const& disks, Transport transport, std::string& cmdline_extra)
{
    STRATA_TRY(check_disks(disks));
    auto set = std::unique_ptr<MachineDisks>(new MachineDisks());
    for (auto const& d : disks) {
        if (auto r = set->attach(vm, memory, pio, mmio, d, transport, cmdline_extra); !r)
            return r.error().context("disk '" + d.id + "'");
    }
    return set;
}

static CacheMode cache_mode(DiskCache cache)
{
    // O_DIRECT unless the user chose the host page cache. cache=unsafe also uses
    // the page cache and still passes guest flushes down: strata does not yet drop
    // flushes, which is the safe side of Firecracker's Unsafe.
    return cache == DiskCache::None ? CacheMode::None : CacheMode::Writeback;
}

Status MachineDisks::attach(Vm& vm, GuestMemory const& memory, Bus& pio, Bus& mmio, DiskConfig const& config,
    Transport transport, std::string& cmdline_extra)
{
    auto disk = std::make_unique<Disk>();
    disk->config = config;
    if (!config.store_disk.empty()) {
        if (!m_store) {
            STRATA_TRY(store, Store::open(Store::default_root()));
            m_store = std::move(store);
        }
        ChainOptions options;
        options.cache = cache_mode(config.cache);
        options.read_only = config.read_only;
        STRATA_TRY(chain, m_store->open_disk(config.store_disk, options));
        disk->chain = chain.get();
        disk->backend = std::move(chain);
    } else {
        STRATA_TRY(format, parse_format(config.format));
        OpenImageOptions options;
        options.writable = !config.read_only;
        options.cache = cache_mode(config.cache);
        STRATA_TRY(backend, open_image(config.path, format, options));
        disk->backend = std::move(backend);
    }

    virtio::blk::BlkOptions options;
    options.id = config.id;
    options.read_only = config.read_only;
    STRATA_TRY(device, virtio::blk::VirtioBlk::create(*disk->backend, options));
    disk->device = std::move(device);

    std::vector<virtio::QueueNotifier> notifiers;
    auto index = static_cast<std::uint32_t>(m_disks.size());
    if (transport == Transport::Mmio) {
        std::uint64_t base = layout::virtio_mmio_base + index * layout::virtio_mmio_stride;
        std::uint32_t gsi = layout::virtio_mmio_first_irq + index;
        if (gsi >= Vm::ioapic_pins)
            return make_error(ErrorKind::Usage, "too many virtio-mmio disks (at most " + std::to_string(Vm::ioapic_pins - layout::virtio_mmio_first_irq) + "); use --transport pci");
        STRATA_TRY(irq, IrqfdLine::create(vm, gsi));
        disk->irq = std::move(irq);
        STRATA_TRY(transport_dev, virtio::MmioTransport::create(*disk->device, memory, *disk->irq, base, gsi));
        disk->mmio = std::move(transport_dev);
        STRATA_TRY(mmio.insert(*disk->mmio, base, layout::virtio_mmio_stride));
        cmdline_extra += " " + disk->mmio->cmdline_entry();
        notifiers = disk->mmio->notifiers();
    } else {
        if (!m_pci) {
            m_pci = std::make_unique<pci::PciBus>();
            STRATA_TRY(pio.insert(*m_pci, pci::PciBus::PortBase, pci::PciBus::PortLength));
        }
        std::uint64_t bar = layout::pci_mmio_base + index * virtio::PciTransport::BarSize;
        if (bar + virtio::PciTransport::BarSize > layout::pci_mmio_end)
            return make_error(ErrorKind::Usage, "too many virtio-pci disks");
        STRATA_TRY(msi, KvmMsiVectors::create(vm, static_cast<std::uint16_t>(disk->device->num_queues() + 1)));
        disk->msi = std::move(msi);
        STRATA_TRY(transport_dev, virtio::PciTransport::create(*disk->device, memory, *disk->msi, bar, nullptr));
        disk->pci = std::move(transport_dev);
        STRATA_TRY(m_pci->add(*disk->pci));
        STRATA_TRY(mmio.insert(*disk->pci, bar, virtio::PciTransport::BarSize));
        notifiers = disk->pci->notifiers();
        // The guest may move BAR 0: move the MMIO range and the notification
        // addresses with it.
        Vm* vmp = &vm;
        Bus* bus = &mmio;
        auto* transport_ptr = disk->pci.get();
        disk->pci->set_relocation_handler([vmp, bus, transport_ptr](std::uint64_t old_base, std::uint64_t new_base) {
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
    m_disks.push_back(std::move(disk));
    return ok();
}

DiskConfig const& MachineDisks::config(std::size_t i) const { return m_disks.at(i)->config; }
BlockBackend& MachineDisks::backend(std::size_t i) { return *m_disks.at(i)->backend; }
Chain* MachineDisks::chain(std::size_t i) { return m_disks.at(i)->chain; }
virtio::blk::VirtioBlk& MachineDisks::device(std::size_t i) { return *m_disks.at(i)->device; }

void MachineDisks::pause_all()
{
    // Ask every disk first and then wait for each, so the drains overlap.
    for (auto& d : m_disks)
        d->device->request_pause();
    for (auto& d : m_disks)
        d->device->wait_paused();
}

void MachineDisks::resume_all()
{
    for (auto& d : m_disks)
        d->device->resume();
}

} // namespace strata
