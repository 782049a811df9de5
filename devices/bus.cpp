#include "devices/bus.h"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace strata {

Status Bus::insert(BusDevice& device, std::uint64_t base, std::uint64_t length)
{
    if (length == 0 || base + length < base)
        return make_error(ErrorKind::Internal, m_name + ": bad range");
    for (auto const& r : m_ranges) {
        if (base < r.base + r.length && r.base < base + length) {
            std::ostringstream msg;
            msg << m_name << ": range 0x" << std::hex << base << "+0x" << length << " overlaps 0x" << r.base << "+0x" << r.length;
            return make_error(ErrorKind::Internal, msg.str());
        }
    }
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

bool Bus::read(std::uint64_t addr, std::span<std::byte> data) const
{
    auto const* r = find(addr, data.size());
    if (!r) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    r->device->read(addr - r->base, data);
    return true;
}

bool Bus::write(std::uint64_t addr, std::span<std::byte const> data) const
{
    auto const* r = find(addr, data.size());
    if (!r)
        return false;
    r->device->write(addr - r->base, data);
    return true;
}

} // namespace strata
