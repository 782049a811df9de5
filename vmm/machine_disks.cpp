#include "vmm/machine_disks.h"

#include "devices/virtio/blk/device.h"
#include "imaging/chain.h"
#include "imaging/open_image.h"
#include "imaging/raw_backend.h"
#include "registry/lazy.h"
#include "store/store.h"
#include "vmm/virtio_slot.h"

#include <cstdio>
#include <map>

namespace strata {

struct MachineDisks::Disk {
    DiskConfig config;
    std::unique_ptr<BlockBackend> backend;
    Chain* chain { nullptr }; // backend, when it is a store disk's chain
    std::unique_ptr<virtio::blk::VirtioBlk> device;
    std::unique_ptr<VirtioSlot> slot; // destroyed before the device
};

MachineDisks::~MachineDisks()
{
    // Transports first: destroying one resets its device and joins its I/O thread.
    for (auto& d : m_disks)
        d->slot.reset();
    m_disks.clear();
}

Result<std::unique_ptr<MachineDisks>> MachineDisks::create(Vm& vm, GuestMemory const& memory, Bus& mmio, pci::PciBus* pci,
    std::vector<DiskConfig> const& disks, Transport transport, std::string& cmdline_extra)
{
    STRATA_TRY(check_disks(disks));
    auto set = std::unique_ptr<MachineDisks>(new MachineDisks());
    // One limiter per rate limit group, shared by its disks (check_disks saw that
    // they agree on its limit); a disk outside any group has its own.
    std::map<std::string, std::shared_ptr<RateLimiter>> groups;
    for (auto const& d : disks) {
        std::shared_ptr<RateLimiter> limiter;
        if (!d.rate_limit_group.empty()) {
            auto& shared = groups[d.rate_limit_group];
            if (!shared)
                shared = std::make_shared<RateLimiter>(d.rate_limit);
            limiter = shared;
        } else {
            limiter = std::make_shared<RateLimiter>(d.rate_limit);
        }
        if (auto r = set->attach(vm, memory, mmio, pci, d, std::move(limiter), transport, cmdline_extra); !r)
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

Status MachineDisks::attach(Vm& vm, GuestMemory const& memory, Bus& mmio, pci::PciBus* pci, DiskConfig const& config,
    std::shared_ptr<RateLimiter> limiter, Transport transport, std::string& cmdline_extra)
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
        STRATA_TRY(chain, m_store->open_disk(config.store_disk, options, config.owner_vm));
        // A disk over lazily pulled layers whose chunks are not all here yet is
        // served through a LazyDisk, which fetches them before they are read.
        STRATA_TRY(backend, registry::wrap_lazy(m_store->root(), std::move(chain), disk->chain));
        disk->backend = std::move(backend);
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
    options.rate_limiter = std::move(limiter);
    STRATA_TRY(device, virtio::blk::VirtioBlk::create(*disk->backend, options));
    disk->device = std::move(device);

    auto index = static_cast<std::uint32_t>(m_disks.size());
    STRATA_TRY(slot, attach_virtio(VirtioBuses { vm, memory, mmio, pci, transport }, *disk->device, index, cmdline_extra));
    disk->slot = std::move(slot);
    m_disks.push_back(std::move(disk));
    return ok();
}

DiskConfig const& MachineDisks::config(std::size_t i) const { return m_disks.at(i)->config; }
BlockBackend& MachineDisks::backend(std::size_t i) { return *m_disks.at(i)->backend; }
Chain* MachineDisks::chain(std::size_t i) { return m_disks.at(i)->chain; }
virtio::blk::VirtioBlk& MachineDisks::device(std::size_t i) { return *m_disks.at(i)->device; }
VirtioSlot& MachineDisks::slot(std::size_t i) { return *m_disks.at(i)->slot; }

void MachineDisks::pause_all()
{
    // Ask every disk first and then wait for each, so the drains overlap.
    for (auto& d : m_disks)
        d->device->request_pause();
    for (auto& d : m_disks)
        d->device->wait_paused();
}

Status MachineDisks::pause_all_within(std::chrono::milliseconds deadline)
{
    auto const until = std::chrono::steady_clock::now() + deadline;
    for (auto& d : m_disks)
        d->device->request_pause();
    for (auto& d : m_disks) {
        if (!d->device->wait_paused_until(until)) {
            resume_all();
            return make_error(ErrorKind::Timeout, "disk '" + d->config.id + "' did not drain its requests within "
                    + std::to_string(deadline.count()) + " ms (its host I/O may hang); every disk runs again");
        }
    }
    return ok();
}

void MachineDisks::resume_all()
{
    for (auto& d : m_disks)
        d->device->resume();
}

} // namespace strata
