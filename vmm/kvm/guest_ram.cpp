#include "vmm/kvm/guest_ram.h"

#include "vmm/layout.h"

#include <string>
#include <sys/mman.h>
#include <sys/sysinfo.h>

namespace strata {

std::uint64_t host_memory_limit()
{
    // sysinfo(2) rather than parsing /proc/meminfo with iostreams: the first
    // iostream use costs milliseconds of locale set-up on every VM start.
    struct sysinfo info {};
    if (::sysinfo(&info) != 0)
        return 0;
    return (static_cast<std::uint64_t>(info.totalram) + info.totalswap) * info.mem_unit;
}

Result<std::unique_ptr<GuestRam>> GuestRam::create(Vm& vm, std::uint64_t size, bool track_dirty)
{
    using namespace layout;
    if (size < min_mib * MiB)
        return make_error(ErrorKind::Usage, "guest memory of " + std::to_string(size / MiB) + " MiB is too small: at least " + std::to_string(min_mib) + " MiB");
    if (size > max_mib * MiB)
        return make_error(ErrorKind::Usage, "guest memory of " + std::to_string(size / MiB) + " MiB is larger than strata's limit of " + std::to_string(max_mib) + " MiB");
    if (size % (2 * MiB) != 0 && size % MiB != 0)
        return make_error(ErrorKind::Usage, "guest memory must be a whole number of MiB");
    auto limit = host_memory_limit();
    if (limit != 0 && size > limit)
        return make_error(ErrorKind::Usage, "guest memory of " + std::to_string(size / MiB) + " MiB is more than this host's RAM and swap (" + std::to_string(limit / MiB) + " MiB)");

    void* host = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE | MAP_ANONYMOUS, -1, 0);
    if (host == MAP_FAILED)
        return errno_error("mmap guest RAM of " + std::to_string(size / MiB) + " MiB");
    // Transparent huge pages cut the guest's TLB misses; failure is harmless. Not
    // with dirty tracking, which counts pages of 4 KiB. (A memory file laid over
    // RAM by map_file replaces the mapping and this advice with it: its pages
    // stay shared with other clones until written.)
    if (!track_dirty)
        ::madvise(host, size, MADV_HUGEPAGE);
    auto* base = static_cast<std::byte*>(host);

    std::vector<GuestMemory::Region> regions;
    std::uint64_t low = size < mmio_hole_start ? size : mmio_hole_start;
    regions.push_back({ 0, low, base });
    if (size > low)
        regions.push_back({ mmio_hole_end, size - low, base + low });

    auto ram = std::unique_ptr<GuestRam>(new GuestRam(vm, size, base, size));
    if (track_dirty) {
        std::uint64_t const words = (size / GuestMemory::page_size + 63) / 64;
        ram->m_dirty_bits = std::make_unique<std::atomic<std::uint64_t>[]>(words);
        std::uint64_t offset = 0;
        for (auto& r : regions) {
            // Each region starts on a whole word of bits: its RAM offset is a
            // multiple of 64 pages (256 KiB), since the low region is whole MiB.
            ram->m_dirty.push_back(offset / GuestMemory::page_size / 64);
            r.dirty = ram->m_dirty_bits.get() + offset / GuestMemory::page_size / 64;
            offset += r.size;
        }
    }
    ram->m_memory = GuestMemory(regions);
    std::uint32_t slot = 0;
    for (auto const& r : regions)
        STRATA_TRY(vm.map_memory(slot++, r.gpa, r.size, r.host, track_dirty));
    return ram;
}

Status GuestRam::map_file(int fd)
{
    void* host = ::mmap(m_host, m_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, fd, 0);
    if (host == MAP_FAILED)
        return errno_error("mmap a memory file over guest RAM of " + std::to_string(m_size / layout::MiB) + " MiB");
    return ok();
}

Status GuestRam::start_dirty_tracking()
{
    if (tracks_dirty())
        return ok();
    std::uint64_t const words = (m_size / GuestMemory::page_size + 63) / 64;
    auto bits = std::make_unique<std::atomic<std::uint64_t>[]>(words);
    std::vector<std::uint64_t> firsts;
    auto const regions = m_memory.regions();
    std::uint64_t offset = 0;
    for (std::size_t slot = 0; slot < regions.size(); ++slot) {
        firsts.push_back(offset / GuestMemory::page_size / 64);
        // The same slot again with only its flags changed: KVM keeps the
        // mapping and starts its log (KVM_MR_FLAGS_ONLY).
        STRATA_TRY(m_vm.map_memory(static_cast<std::uint32_t>(slot), regions[slot].gpa, regions[slot].size, regions[slot].host, true));
        offset += regions[slot].size;
    }
    m_dirty_bits = std::move(bits);
    m_dirty = std::move(firsts);
    for (std::size_t slot = 0; slot < regions.size(); ++slot)
        m_memory.start_dirty_tracking(slot, m_dirty_bits.get() + m_dirty[slot]);
    return ok();
}

Result<std::vector<std::uint64_t>> GuestRam::take_dirty_pages()
{
    if (!tracks_dirty())
        return make_error(ErrorKind::Unsupported, "dirty pages are not tracked for this VM (enable them: track_dirty_pages, enable_diff_snapshots)");
    std::uint64_t const words = (m_size / GuestMemory::page_size + 63) / 64;
    std::vector<std::uint64_t> bits(words);
    for (std::uint64_t i = 0; i < words; ++i)
        bits[i] = m_dirty_bits[i].exchange(0, std::memory_order_relaxed);
    auto const regions = m_memory.regions();
    for (std::size_t slot = 0; slot < regions.size(); ++slot) {
        std::uint64_t const first = m_dirty[slot];
        std::uint64_t const count = (regions[slot].size / GuestMemory::page_size + 63) / 64;
        STRATA_TRY(m_vm.get_dirty_log(static_cast<std::uint32_t>(slot), std::span(bits).subspan(first, count)));
    }
    return bits;
}

GuestRam::~GuestRam()
{
    ::munmap(m_host, m_host_size);
}

} // namespace strata
