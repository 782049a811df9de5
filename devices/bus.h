// The port-I/O and MMIO buses: address ranges mapped to devices. A vCPU exit for
// port I/O or MMIO is routed here; an access that hits no device reads as all ones
// and writes are dropped, as on a PC.
// Threading: ranges are mostly inserted before vCPUs start, but a guest may move a
// PCI BAR while running, so the range table sits behind a reader-writer lock:
// lookups share it, insert/move take it exclusively. Devices are called after the
// lock is released, so a device may move ranges from inside an access; devices
// are never destroyed while vCPUs run, so the pointer stays valid. Each device serializes its own state (vCPU threads may
// call it concurrently).
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
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
    // Moves the range that starts at old_base to new_base (same length).
    [[nodiscard]] Status move(std::uint64_t old_base, std::uint64_t new_base);
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
    Status check_free(std::uint64_t base, std::uint64_t length, BusDevice const* ignore) const;

    mutable std::shared_mutex m_lock;
    std::string m_name;
    std::vector<Range> m_ranges; // sorted by base, non-overlapping
};

} // namespace strata
