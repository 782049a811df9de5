#include "devices/pci/msix.h"

#include <cstring>

namespace strata::pci {

MsixTable::MsixTable(std::uint16_t vectors, MsiSink& sink)
    : m_sink(sink)
    , m_entries(vectors)
{
}

std::array<std::byte, 10> MsixTable::capability_body(std::uint8_t bir, std::uint32_t table_offset,
    std::uint32_t pba_offset) const
{
    std::array<std::byte, 10> b {};
    std::uint16_t const control = static_cast<std::uint16_t>(m_entries.size() - 1);
    std::uint32_t const table = table_offset | bir;
    std::uint32_t const pba = pba_offset | bir;
    std::memcpy(&b[0], &control, 2);
    std::memcpy(&b[2], &table, 4);
    std::memcpy(&b[6], &pba, 4);
    return b;
}

std::array<std::byte, 10> MsixTable::capability_mask()
{
    std::array<std::byte, 10> m {};
    m[1] = std::byte { 0xc0 }; // enable (bit 15) and function mask (bit 14)
    return m;
}

void MsixTable::set_control(std::uint16_t control)
{
    std::vector<std::pair<std::uint16_t, MsiMessage>> list;
    {
        std::lock_guard lock(m_mutex);
        bool const enabled = (control & MsixControlEnable) != 0;
        bool const fmask = (control & MsixControlFunctionMask) != 0;
        if (enabled == m_enabled && fmask == m_function_mask)
            return;
        m_enabled = enabled;
        m_function_mask = fmask;
        for (std::uint16_t v = 0; v < m_entries.size(); ++v)
            refresh(v, list);
    }
    deliver(list);
}

void MsixTable::refresh(std::uint16_t vector, std::vector<std::pair<std::uint16_t, MsiMessage>>& list)
{
    Entry& e = m_entries[vector];
    bool const off = !m_enabled || masked(e);
    m_sink.update_route(vector, message(e), off);
    if (!off && e.pending) {
        e.pending = false;
        list.emplace_back(vector, message(e));
    }
}

void MsixTable::deliver(std::vector<std::pair<std::uint16_t, MsiMessage>> const& list)
{
    for (auto const& [vector, msg] : list)
        m_sink.fire(vector, msg);
}

void MsixTable::table_read(std::uint64_t offset, std::span<std::byte> data) const
{
    std::memset(data.data(), 0, data.size());
    if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0 || offset >= table_bytes())
        return;
    std::lock_guard lock(m_mutex);
    Entry const& e = m_entries[offset / 16];
    std::uint32_t const words[4] = { e.address_lo, e.address_hi, e.data, e.control };
    // SAFETY: words is 16 bytes and offset % 16 + size <= 16 (aligned 4/8-byte access).
    std::memcpy(data.data(), reinterpret_cast<std::byte const*>(words) + offset % 16, data.size());
}

void MsixTable::table_write(std::uint64_t offset, std::span<std::byte const> data)
{
    if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0 || offset >= table_bytes())
        return;
    std::vector<std::pair<std::uint16_t, MsiMessage>> list;
    {
        std::lock_guard lock(m_mutex);
        auto const vector = static_cast<std::uint16_t>(offset / 16);
        Entry& e = m_entries[vector];
        std::uint32_t words[4] = { e.address_lo, e.address_hi, e.data, e.control };
        // SAFETY: words is 16 bytes and offset % 16 + size <= 16 (aligned 4/8-byte access).
        std::memcpy(reinterpret_cast<std::byte*>(words) + offset % 16, data.data(), data.size());
        e.address_lo = words[0];
        e.address_hi = words[1];
        e.data = words[2];
        e.control = words[3] & 1; // the other Vector Control bits are reserved
        refresh(vector, list);
    }
    deliver(list);
}

void MsixTable::pba_read(std::uint64_t offset, std::span<std::byte> data) const
{
    std::memset(data.data(), 0, data.size());
    std::lock_guard lock(m_mutex);
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::uint64_t const byte = offset + i;
        std::uint8_t bits = 0;
        for (unsigned b = 0; b < 8; ++b) {
            std::uint64_t const v = byte * 8 + b;
            if (v < m_entries.size() && m_entries[v].pending)
                bits = static_cast<std::uint8_t>(bits | (1u << b));
        }
        data[i] = std::byte { bits };
    }
}

bool MsixTable::enabled() const
{
    std::lock_guard lock(m_mutex);
    return m_enabled;
}

bool MsixTable::fire(std::uint16_t vector)
{
    MsiMessage msg;
    {
        std::lock_guard lock(m_mutex);
        if (!m_enabled || vector >= m_entries.size())
            return false;
        Entry& e = m_entries[vector];
        if (masked(e)) {
            e.pending = true;
            return true;
        }
        msg = message(e);
    }
    m_sink.fire(vector, msg);
    return true;
}

void MsixTable::reset()
{
    std::lock_guard lock(m_mutex);
    m_enabled = false;
    m_function_mask = false;
    for (std::uint16_t v = 0; v < m_entries.size(); ++v) {
        m_entries[v] = Entry {};
        m_sink.update_route(v, MsiMessage {}, true);
    }
}

MsixSnapshot MsixTable::save() const
{
    std::lock_guard lock(m_mutex);
    MsixSnapshot s;
    s.enabled = m_enabled;
    s.function_mask = m_function_mask;
    for (auto const& e : m_entries)
        s.vectors.push_back(MsixVectorSnapshot { e.address_lo, e.address_hi, e.data, e.control, e.pending });
    return s;
}

bool MsixTable::restore(MsixSnapshot const& snapshot)
{
    std::vector<std::pair<std::uint16_t, MsiMessage>> list;
    {
        std::lock_guard lock(m_mutex);
        if (snapshot.vectors.size() != m_entries.size())
            return false;
        m_enabled = snapshot.enabled;
        m_function_mask = snapshot.function_mask;
        for (std::size_t v = 0; v < m_entries.size(); ++v) {
            auto const& in = snapshot.vectors[v];
            m_entries[v] = Entry { in.address_lo, in.address_hi, in.data, in.control & 1, in.pending };
        }
        // refresh() delivers a pending vector that is unmasked; a consistent
        // snapshot has none, and delivering one is what the hardware would do.
        for (std::uint16_t v = 0; v < m_entries.size(); ++v)
            refresh(v, list);
    }
    deliver(list);
    return true;
}

} // namespace strata::pci
