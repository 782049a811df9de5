// The boot-complete port: a guest writes the byte 123 to I/O port 0x3f0 when it
// has finished booting (Firecracker's boot-timer convention; strata-agent does it
// after switching root, firmware test programs do it at start). The first such
// write calls on_boot_complete once; later writes, other values and reads (which
// return zero) do nothing, so a guest can neither flood the log nor move the mark.
// Threading: the callback runs on the writing vCPU's thread, at most once.
#pragma once

#include "devices/bus.h"

#include <atomic>
#include <cstring>
#include <functional>

namespace strata {

class BootTimer final : public BusDevice {
public:
    static constexpr std::uint16_t Port = 0x3f0;
    static constexpr std::uint8_t MagicValue = 123;

    explicit BootTimer(std::function<void()> on_boot_complete)
        : m_on_boot_complete(std::move(on_boot_complete))
    {
    }
    void read(std::uint64_t, std::span<std::byte> data) override { std::memset(data.data(), 0, data.size()); }
    void write(std::uint64_t offset, std::span<std::byte const> data) override
    {
        if (offset != 0 || data.empty() || std::to_integer<std::uint8_t>(data[0]) != MagicValue)
            return;
        if (!m_fired.exchange(true))
            m_on_boot_complete();
    }

private:
    std::function<void()> m_on_boot_complete;
    std::atomic<bool> m_fired { false };
};

} // namespace strata
