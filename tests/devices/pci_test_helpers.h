// Configuration-mechanism-#1 accessors for the PCI tests: every access goes
// through the PciBus as port I/O at 0xCF8/0xCFC, as a guest's does.
#pragma once

#include "devices/interrupt.h"
#include "devices/pci/pci_bus.h"

#include <cstring>
#include <mutex>
#include <vector>

namespace strata::test {

class PciPorts {
public:
    explicit PciPorts(pci::PciBus& bus)
        : m_bus(bus)
    {
    }
    void select(unsigned device, unsigned offset, unsigned function = 0, unsigned bus = 0)
    {
        std::uint32_t a = 0x80000000u | (bus << 16) | (device << 11) | (function << 8) | (offset & 0xfc);
        m_bus.write(0, std::as_bytes(std::span(&a, 1)));
    }
    std::uint32_t read32(unsigned device, unsigned offset) { return read(device, offset, 4); }
    std::uint32_t read(unsigned device, unsigned offset, unsigned size)
    {
        select(device, offset);
        std::uint32_t v = 0;
        m_bus.read(4 + (offset & 3), std::as_writable_bytes(std::span(&v, 1)).first(size));
        return v;
    }
    void write(unsigned device, unsigned offset, std::uint32_t v, unsigned size = 4)
    {
        select(device, offset);
        m_bus.write(4 + (offset & 3), std::as_bytes(std::span(&v, 1)).first(size));
    }
    // Walks the capability list; returns the offset of the n-th capability with id.
    unsigned find_cap(unsigned device, unsigned id, unsigned nth = 0)
    {
        unsigned at = read(device, 0x34, 1);
        while (at != 0) {
            if (read(device, at, 1) == id && nth-- == 0)
                return at;
            at = read(device, at + 1, 1);
        }
        return 0;
    }

private:
    pci::PciBus& m_bus;
};

class RecordingMsi final : public MsiSink {
public:
    void update_route(std::uint16_t vector, MsiMessage const& message, bool masked) override
    {
        std::lock_guard lock(m_mutex);
        routes.push_back({ vector, message, masked });
    }
    void fire(std::uint16_t vector, MsiMessage const& message) override
    {
        std::lock_guard lock(m_mutex);
        fired.push_back({ vector, message, false });
    }
    struct Event {
        std::uint16_t vector;
        MsiMessage message;
        bool masked;
    };
    std::vector<Event> fired_copy()
    {
        std::lock_guard lock(m_mutex);
        return fired;
    }
    std::vector<Event> routes;
    std::vector<Event> fired;

private:
    std::mutex m_mutex;
};

} // namespace strata::test
