#include "devices/guest_memory.h"

#include <algorithm>
#include <sstream>

namespace strata {

GuestMemory::GuestMemory(std::vector<Region> regions)
    : m_regions(std::move(regions))
{
    std::sort(m_regions.begin(), m_regions.end(), [](Region const& a, Region const& b) { return a.gpa < b.gpa; });
}

std::uint64_t GuestMemory::total_size() const
{
    std::uint64_t total = 0;
    for (auto const& r : m_regions)
        total += r.size;
    return total;
}

Result<std::span<std::byte>> GuestMemory::slice(std::uint64_t gpa, std::uint64_t len) const
{
    Region const* region = nullptr;
    STRATA_TRY(s, find(gpa, len, &region));
    mark(*region, gpa, len);
    return s;
}

void GuestMemory::mark(Region const& region, std::uint64_t gpa, std::uint64_t len)
{
    // SAFETY: Region::dirty is only ever accessed atomically (see the header).
    auto* dirty = std::atomic_ref(const_cast<Region&>(region).dirty).load(std::memory_order_acquire);
    if (dirty == nullptr || len == 0)
        return;
    std::uint64_t const first = (gpa - region.gpa) / page_size;
    std::uint64_t const last = (gpa - region.gpa + len - 1) / page_size;
    for (std::uint64_t p = first; p <= last; ++p)
        dirty[p / 64].fetch_or(std::uint64_t { 1 } << (p % 64), std::memory_order_relaxed);
}

void GuestMemory::start_dirty_tracking(std::size_t index, std::atomic<std::uint64_t>* bits)
{
    if (index >= m_regions.size())
        return;
    std::atomic_ref ref(m_regions[index].dirty);
    std::atomic<std::uint64_t>* none = nullptr;
    ref.compare_exchange_strong(none, bits, std::memory_order_release, std::memory_order_relaxed);
}

void GuestMemory::mark_dirty(std::uint64_t gpa, std::uint64_t len) const
{
    Region const* region = nullptr;
    if (find(gpa, len, &region))
        mark(*region, gpa, len);
}

void GuestMemory::mark_written(std::span<std::byte const> host) const
{
    auto const at = reinterpret_cast<std::uintptr_t>(host.data());
    for (auto const& r : m_regions) {
        auto const base = reinterpret_cast<std::uintptr_t>(r.host);
        if (at < base || at - base > r.size || host.size() > r.size - (at - base))
            continue;
        mark(r, r.gpa + (at - base), host.size());
        return;
    }
}

Result<std::span<std::byte>> GuestMemory::find(std::uint64_t gpa, std::uint64_t len, Region const** region) const
{
    for (auto const& r : m_regions) {
        if (gpa < r.gpa)
            break;
        std::uint64_t off = gpa - r.gpa;
        // Written so that neither side can overflow: off <= size, then len <= size - off.
        if (off > r.size || len > r.size - off)
            continue;
        if (region)
            *region = &r;
        // SAFETY: [off, off+len) lies inside the region, checked just above.
        return std::span<std::byte>(r.host + off, static_cast<std::size_t>(len));
    }
    std::ostringstream msg;
    msg << "guest address range 0x" << std::hex << gpa << "+0x" << len << " is outside guest memory";
    return make_error(ErrorKind::BadInput, msg.str());
}

Status GuestMemory::read_bytes(std::uint64_t gpa, std::span<std::byte> out) const
{
    STRATA_TRY(s, find(gpa, out.size()));
    std::memcpy(out.data(), s.data(), out.size());
    return ok();
}

Status GuestMemory::write_bytes(std::uint64_t gpa, std::span<std::byte const> in) const
{
    STRATA_TRY(s, slice(gpa, in.size()));
    std::memcpy(s.data(), in.data(), in.size());
    return ok();
}

} // namespace strata
