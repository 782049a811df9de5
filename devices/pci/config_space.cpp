#include "devices/pci/config_space.h"

#include <cassert>
#include <cstring>

namespace strata::pci {

namespace {

void put16(std::array<std::byte, ConfigSize>& b, std::size_t at, std::uint16_t v) { std::memcpy(&b[at], &v, 2); }

constexpr std::uint32_t BarMem64 = 0x4; // memory BAR, type 10b (64-bit), not prefetchable

} // namespace

PciConfigSpace::PciConfigSpace(PciIdentity const& id)
{
    put16(m_bytes, 0x00, id.vendor);
    put16(m_bytes, 0x02, id.device);
    m_bytes[0x08] = std::byte { id.revision };
    m_bytes[0x09] = std::byte(id.class_code & 0xff);
    m_bytes[0x0a] = std::byte((id.class_code >> 8) & 0xff);
    m_bytes[0x0b] = std::byte((id.class_code >> 16) & 0xff);
    m_bytes[0x0e] = std::byte { id.header_type };
    put16(m_bytes, 0x2c, id.subsystem_vendor);
    put16(m_bytes, 0x2e, id.subsystem);
    m_bytes[reg::InterruptPin] = std::byte { id.interrupt_pin };
    // Writable: memory/bus-master/parity/SERR/INTx-disable in Command, the cache
    // line size, latency timer and interrupt line.
    m_mask[0x04] = std::byte { 0x46 };
    m_mask[0x05] = std::byte { 0x05 };
    m_mask[0x0c] = std::byte { 0xff };
    m_mask[0x0d] = std::byte { 0xff };
    m_mask[reg::InterruptLine] = std::byte { 0xff };
}

void PciConfigSpace::add_bar64(unsigned index, std::uint64_t size, std::uint64_t address)
{
    assert(index < 5 && size >= 16 && (size & (size - 1)) == 0 && address % size == 0);
    m_bars[index] = Bar { size, address, address, true };
}

std::uint8_t PciConfigSpace::add_capability(std::uint8_t id, std::span<std::byte const> body,
    std::span<std::byte const> write_mask)
{
    assert(body.size() == write_mask.size());
    std::uint8_t const at = m_next_cap;
    assert(at + 2 + body.size() <= ConfigSize);
    m_bytes[at] = std::byte { id };
    m_bytes[at + 1] = std::byte { 0 };
    std::memcpy(&m_bytes[at + 2], body.data(), body.size());
    std::memcpy(&m_mask[at + 2], write_mask.data(), write_mask.size());
    if (m_last_cap == 0) {
        m_bytes[reg::CapabilitiesPointer] = std::byte { at };
        m_bytes[reg::Status] |= std::byte { StatusCapList };
    } else {
        m_bytes[m_last_cap + 1] = std::byte { at };
    }
    m_last_cap = at;
    m_next_cap = static_cast<std::uint8_t>((at + 2 + body.size() + 3) & ~std::size_t(3));
    return at;
}

std::uint32_t PciConfigSpace::bar_dword(unsigned slot) const
{
    if (m_bars[slot].present) {
        auto const& b = m_bars[slot];
        return static_cast<std::uint32_t>(b.address & 0xfffffff0) | BarMem64;
    }
    if (slot > 0 && m_bars[slot - 1].present)
        return static_cast<std::uint32_t>(m_bars[slot - 1].address >> 32);
    return 0;
}

void PciConfigSpace::write_bar_byte(unsigned slot, unsigned byte, std::uint8_t value)
{
    std::uint32_t dword = bar_dword(slot);
    dword = (dword & ~(0xffu << (8 * byte))) | (std::uint32_t(value) << (8 * byte));
    if (m_bars[slot].present) {
        Bar& b = m_bars[slot];
        std::uint64_t const low = dword & 0xfffffff0 & ~(b.size - 1);
        b.address = (b.address & ~0xffffffffULL) | low;
    } else if (slot > 0 && m_bars[slot - 1].present) {
        Bar& b = m_bars[slot - 1];
        std::uint64_t const high = (std::uint64_t(dword) << 32) & ~(b.size - 1);
        b.address = (b.address & 0xffffffffULL) | high;
    }
}

void PciConfigSpace::read(std::uint64_t offset, std::span<std::byte> data) const
{
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::uint64_t const at = offset + i;
        if (at >= ConfigSize) {
            data[i] = std::byte { 0xff };
        } else if (at >= reg::Bar0 && at < reg::Bar0 + 24) {
            unsigned const slot = static_cast<unsigned>((at - reg::Bar0) / 4);
            data[i] = std::byte((bar_dword(slot) >> (8 * ((at - reg::Bar0) % 4))) & 0xff);
        } else {
            data[i] = m_bytes[at];
        }
    }
}

void PciConfigSpace::write(std::uint64_t offset, std::span<std::byte const> data)
{
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::uint64_t const at = offset + i;
        if (at >= ConfigSize)
            break;
        if (at >= reg::Bar0 && at < reg::Bar0 + 24) {
            write_bar_byte(static_cast<unsigned>((at - reg::Bar0) / 4), static_cast<unsigned>((at - reg::Bar0) % 4),
                std::to_integer<std::uint8_t>(data[i]));
            continue;
        }
        m_bytes[at] = (m_bytes[at] & ~m_mask[at]) | (data[i] & m_mask[at]);
    }
    check_relocation();
}

void PciConfigSpace::poke(std::uint64_t offset, std::span<std::byte const> data)
{
    if (offset < ConfigSize && data.size() <= ConfigSize - offset)
        std::memcpy(&m_bytes[offset], data.data(), data.size());
}

bool PciConfigSpace::memory_enabled() const
{
    return (std::to_integer<unsigned>(m_bytes[reg::Command]) & CommandMemory) != 0;
}

void PciConfigSpace::check_relocation()
{
    if (!memory_enabled())
        return;
    for (unsigned i = 0; i < m_bars.size(); ++i) {
        Bar& b = m_bars[i];
        if (!b.present || b.address == b.reported)
            continue;
        std::uint64_t const old = b.reported;
        b.reported = b.address;
        if (m_on_relocate)
            m_on_relocate(i, old, b.address);
    }
}

std::array<std::uint64_t, 6> PciConfigSpace::bar_addresses() const
{
    std::array<std::uint64_t, 6> out {};
    for (unsigned i = 0; i < m_bars.size(); ++i)
        out[i] = m_bars[i].present ? m_bars[i].address : 0;
    return out;
}

void PciConfigSpace::restore(std::span<std::byte const, ConfigSize> bytes, std::array<std::uint64_t, 6> const& bar_addresses)
{
    // Only the bits a guest can write come from the snapshot: the identity and
    // the capability layout stay this device's own, whatever the file says.
    for (std::size_t i = 0; i < ConfigSize; ++i)
        m_bytes[i] = (m_bytes[i] & ~m_mask[i]) | (bytes[i] & m_mask[i]);
    for (unsigned i = 0; i < m_bars.size(); ++i) {
        Bar& b = m_bars[i];
        if (!b.present)
            continue;
        // Only what a guest could have written: an address aligned to the size.
        b.address = bar_addresses[i] & ~(b.size - 1);
        b.reported = b.address;
    }
}

} // namespace strata::pci
