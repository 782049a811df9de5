// The port-I/O and MMIO buses: address ranges mapped to devices. A vCPU exit for
// port I/O or MMIO is routed here; an access that hits no device reads as all ones
// and writes are dropped, as on a PC.
// Threading: ranges are inserted before vCPUs start and never removed, so lookups
// take no lock. Each device serializes its own state (vCPU threads may call it
// concurrently).
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace strata {

class BusDevice {
public:
    virtual ~BusDevice() = default;
    // offset is relative to the start of the range the device was inserted at.
    virtual void read(std::uint64_t offset, std::span<std::byte> data) = 0;
    virtual void write(std::uint64_t offset, std::span<std::byte const> data) = 0;
};

class Bus {
public:
    explicit Bus(std::string name)
        : m_name(std::move(name))
    {
    }
    // The bus does not own the device; the Machine does, and outlives the bus's use.
    [[nodiscard]] Status insert(BusDevice& device, std::uint64_t base, std::uint64_t length);
    // Returns false if no device claims the address.
    bool read(std::uint64_t addr, std::span<std::byte> data) const;
    bool write(std::uint64_t addr, std::span<std::byte const> data) const;

private:
    struct Range {
        std::uint64_t base;
        std::uint64_t length;
        BusDevice* device;
    };
    Range const* find(std::uint64_t addr, std::uint64_t len) const;

    std::string m_name;
    std::vector<Range> m_ranges; // sorted by base, non-overlapping
};

} // namespace strata
