// PCI bus 0 as the guest sees it through configuration mechanism #1 (PCI Local
// Bus 3.0 §3.2.2.3.2): the CONFIG_ADDRESS register at port 0xCF8 and the
// CONFIG_DATA window at 0xCFC-0xCFF. PciBus is the BusDevice the VMM inserts on the
// port bus at 0xCF8 with length 8. Device 0 is a host bridge; the VMM adds its
// functions with add(), one function (function 0) per device number.
//
// A configuration read of an empty slot, another bus or another function returns
// all ones (how a driver finds the slot empty); writes there are dropped. Only
// 32-bit accesses reach CONFIG_ADDRESS; narrower ones at 0xCF8-0xCFB are ignored
// (on a PC they belong to other chipset registers, such as 0xCF9 reset control).
// Not implemented: PCIe ECAM (MMCONFIG), multiple buses, multi-function devices.
//
// Threading: add() before vCPUs run; accesses from any vCPU thread, serialized by
// a lock (each device also serializes itself).
#pragma once

#include "base/result.h"
#include "devices/bus.h"
#include "devices/pci/config_space.h"

#include <array>
#include <mutex>

namespace strata::pci {

// One PCI function's configuration space as the bus reaches it; offset is 0-255.
class PciDevice {
public:
    virtual ~PciDevice() = default;
    virtual void config_read(std::uint64_t offset, std::span<std::byte> data) = 0;
    virtual void config_write(std::uint64_t offset, std::span<std::byte const> data) = 0;
};

// 00:00.0, a host bridge with nothing to configure.
class HostBridge final : public PciDevice {
public:
    HostBridge();
    void config_read(std::uint64_t offset, std::span<std::byte> data) override { m_config.read(offset, data); }
    void config_write(std::uint64_t offset, std::span<std::byte const> data) override { m_config.write(offset, data); }
    PciConfigSpace& config() { return m_config; }
    PciConfigSpace const& config() const { return m_config; }

private:
    PciConfigSpace m_config;
};

class PciBus final : public BusDevice {
public:
    static constexpr std::uint64_t PortBase = 0xcf8;
    static constexpr std::uint64_t PortLength = 8;

    PciBus();
    // Places device at the next free device number (1..31) and returns it. The
    // bus does not own the device; the Machine does.
    [[nodiscard]] Result<std::uint8_t> add(PciDevice& device);

    void read(std::uint64_t offset, std::span<std::byte> data) override;
    void write(std::uint64_t offset, std::span<std::byte const> data) override;

    // Running-state snapshots: CONFIG_ADDRESS (a guest may be paused between
    // its write to 0xCF8 and its access to 0xCFC) and the host bridge's
    // configuration bytes (its command register is writable).
    std::uint32_t config_address() const;
    void set_config_address(std::uint32_t address);
    std::array<std::byte, ConfigSize> host_bridge_bytes() const;
    void restore_host_bridge(std::span<std::byte const, ConfigSize> bytes);

private:
    // The device and register offset CONFIG_ADDRESS selects, plus the byte within
    // the data window; nullptr when nothing answers.
    PciDevice* target(std::uint64_t window_offset, std::uint64_t& config_offset) const;

    mutable std::mutex m_mutex;
    std::uint32_t m_address { 0 };
    HostBridge m_host_bridge;
    std::array<PciDevice*, 32> m_slots {};
};

} // namespace strata::pci
