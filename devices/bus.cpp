#include "devices/bus.h"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace strata {

Status Bus::check_free(std::uint64_t base, std::uint64_t length, BusDevice const* ignore) const
{
    if (length == 0 || base + length < base)
        return make_error(ErrorKind::Internal, m_name + ": bad range");
    for (auto const& r : m_ranges) {
        if (r.device != ignore && base < r.base + r.length && r.base < base + length) {
            std::ostringstream msg;
            msg << m_name << ": range 0x" << std::hex << base << "+0x" << length << " overlaps 0x" << r.base << "+0x" << r.length;
            return make_error(ErrorKind::Internal, msg.str());
        }
    }
    return ok();
}

Status Bus::insert(BusDevice& device, std::uint64_t base, std::uint64_t length)
{
    std::unique_lock guard(m_lock);
    STRATA_TRY(check_free(base, length, nullptr));
    m_ranges.push_back(Range { base, length, &device });
    std::sort(m_ranges.begin(), m_ranges.end(), [](Range const& a, Range const& b) { return a.base < b.base; });
    return ok();
}

Bus::Range const* Bus::find(std::uint64_t addr, std::uint64_t len) const
{
    auto it = std::upper_bound(m_ranges.begin(), m_ranges.end(), addr, [](std::uint64_t a, Range const& r) { return a < r.base; });
    if (it == m_ranges.begin())
        return nullptr;
    --it;
    std::uint64_t off = addr - it->base;
    if (off >= it->length || len > it->length - off)
        return nullptr;
    return &*it;
}

Status Bus::move(std::uint64_t old_base, std::uint64_t new_base)
{
    std::unique_lock guard(m_lock);
    auto it = std::find_if(m_ranges.begin(), m_ranges.end(), [&](Range const& r) { return r.base == old_base; });
    if (it == m_ranges.end())
        return make_error(ErrorKind::Internal, m_name + ": no range to move");
    STRATA_TRY(check_free(new_base, it->length, it->device));
    it->base = new_base;
    std::sort(m_ranges.begin(), m_ranges.end(), [](Range const& a, Range const& b) { return a.base < b.base; });
    return ok();
}

bool Bus::read(std::uint64_t addr, std::span<std::byte> data) const
{
    BusDevice* device = nullptr;
    std::uint64_t offset = 0;
    {
        // The device is called after the lock is dropped, so a device may move
        // ranges (a PCI BAR) from inside its own access without deadlocking.
        std::shared_lock guard(m_lock);
        if (auto const* r = find(addr, data.size())) {
            device = r->device;
            offset = addr - r->base;
        }
    }
    if (!device) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    device->read(offset, data);
    return true;
}

bool Bus::write(std::uint64_t addr, std::span<std::byte const> data) const
{
    BusDevice* device = nullptr;
    std::uint64_t offset = 0;
    {
        std::shared_lock guard(m_lock);
        if (auto const* r = find(addr, data.size())) {
            device = r->device;
            offset = addr - r->base;
        }
    }
    if (!device)
        return false;
    device->write(offset, data);
    return true;
}

} // namespace strata
