// The exit port: the same contract as QEMU's `-device isa-debug-exit,iobase=0xf4,
// iosize=0x04`, so one guest program ends itself under both. A write of any width
// hands its value to the VMM, which ends the VM with that value as exit status
// (QEMU exits with (value << 1) | 1 instead). Reads return zero.
// Threading: the callback runs on the writing vCPU's thread.
#pragma once

#include "devices/bus.h"

#include <cstring>
#include <functional>

namespace strata {

class DebugExit final : public BusDevice {
public:
    explicit DebugExit(std::function<void(std::uint32_t)> on_exit)
        : m_on_exit(std::move(on_exit))
    {
    }
    void read(std::uint64_t, std::span<std::byte> data) override { std::memset(data.data(), 0, data.size()); }
    void write(std::uint64_t, std::span<std::byte const> data) override
    {
        std::uint32_t value = 0;
        std::memcpy(&value, data.data(), data.size() < 4 ? data.size() : 4);
        m_on_exit(value);
    }

private:
    std::function<void(std::uint32_t)> m_on_exit;
};

} // namespace strata
