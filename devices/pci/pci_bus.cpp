#include "devices/pci/pci_bus.h"

#include <algorithm>
#include <cstring>

namespace strata::pci {

HostBridge::HostBridge()
    : m_config(PciIdentity { .vendor = 0x8086, .device = 0x0d57, .class_code = 0x060000 })
{
}

PciBus::PciBus() { m_slots[0] = &m_host_bridge; }

Result<std::uint8_t> PciBus::add(PciDevice& device)
{
    std::lock_guard lock(m_mutex);
    for (std::uint8_t slot = 1; slot < m_slots.size(); ++slot) {
        if (!m_slots[slot]) {
            m_slots[slot] = &device;
            return slot;
        }
    }
    return make_error(ErrorKind::NoSpace, "PCI bus 0 has no free device number");
}

PciDevice* PciBus::target(std::uint64_t window_offset, std::uint64_t& config_offset) const
{
    if (!(m_address & 0x80000000u))
        return nullptr;
    unsigned const bus = (m_address >> 16) & 0xff;
    unsigned const device = (m_address >> 11) & 0x1f;
    unsigned const function = (m_address >> 8) & 0x7;
    if (bus != 0 || function != 0)
        return nullptr;
    config_offset = (m_address & 0xfc) + window_offset;
    return m_slots[device];
}

void PciBus::read(std::uint64_t offset, std::span<std::byte> data)
{
    std::lock_guard lock(m_mutex);
    if (offset < 4) {
        std::memset(data.data(), 0xff, data.size());
        if (offset == 0 && data.size() == 4)
            std::memcpy(data.data(), &m_address, 4);
        return;
    }
    std::uint64_t const window = offset - 4;
    std::uint64_t config_offset = 0;
    PciDevice* device = target(window, config_offset);
    if (!device || window + data.size() > 4) {
        std::memset(data.data(), 0xff, data.size());
        return;
    }
    device->config_read(config_offset, data);
}

void PciBus::write(std::uint64_t offset, std::span<std::byte const> data)
{
    std::lock_guard lock(m_mutex);
    if (offset < 4) {
        if (offset == 0 && data.size() == 4) {
            std::memcpy(&m_address, data.data(), 4);
            m_address &= 0x80fffffcu; // reserved bits read as zero
        }
        return;
    }
    std::uint64_t const window = offset - 4;
    std::uint64_t config_offset = 0;
    PciDevice* device = target(window, config_offset);
    if (!device || window + data.size() > 4)
        return;
    device->config_write(config_offset, data);
}

std::uint32_t PciBus::config_address() const
{
    std::lock_guard lock(m_mutex);
    return m_address;
}

void PciBus::set_config_address(std::uint32_t address)
{
    std::lock_guard lock(m_mutex);
    m_address = address & 0x80fffffcu;
}

std::array<std::byte, ConfigSize> PciBus::host_bridge_bytes() const
{
    std::lock_guard lock(m_mutex);
    std::array<std::byte, ConfigSize> out {};
    auto const b = m_host_bridge.config().bytes();
    std::copy(b.begin(), b.end(), out.begin());
    return out;
}

void PciBus::restore_host_bridge(std::span<std::byte const, ConfigSize> bytes)
{
    std::lock_guard lock(m_mutex);
    m_host_bridge.config().restore(bytes, {});
}

} // namespace strata::pci
