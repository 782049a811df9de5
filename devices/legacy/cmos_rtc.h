// The PC's CMOS real-time clock (a Motorola MC146818 at ports 0x70/0x71): index
// register at offset 0 (bit 7 is the NMI mask and is ignored), data at offset 1.
// The time registers read the host's UTC clock at each read, in BCD or binary and
// 24- or 12-hour form as register B asks. The update-in-progress bit never reads
// set: Linux's rtc_cmos driver polls it before trusting the clock, and with no
// clock here at all it polled for about 2.6 s of a 6 s boot before giving up.
// Reference: Motorola MC146818A data sheet; the century byte at 0x32 as PCs keep it.
// Not implemented: alarms, the periodic and update-ended interrupts (register C
// reads zero; nothing raises IRQ 8), setting the time (writes to the time
// registers are ignored: the guest keeps the host's clock), the divider chain.
// Threading: vCPU threads call read/write; a mutex serializes them.
#pragma once

#include "devices/bus.h"

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>

namespace strata {

class CmosRtc final : public BusDevice {
public:
    // now() gives the wall-clock time in seconds since the epoch (UTC); tests
    // pass a fixed one.
    explicit CmosRtc(std::function<std::time_t()> now = [] { return std::time(nullptr); });

    void read(std::uint64_t offset, std::span<std::byte> data) override;
    void write(std::uint64_t offset, std::span<std::byte const> data) override;

    enum Reg : std::uint8_t {
        Seconds = 0x00,   // r   seconds
        Minutes = 0x02,   // r   minutes
        Hours = 0x04,     // r   hours (bit 7: PM in 12-hour mode)
        Weekday = 0x06,   // r   day of week, 1 = Sunday
        Day = 0x07,       // r   day of month
        Month = 0x08,     // r   month
        Year = 0x09,      // r   year of the century
        RegA = 0x0a,      // rw  UIP (bit 7, always 0) and divider bits
        RegB = 0x0b,      // rw  SET, interrupt enables, DM (bit 2: binary), 24/12 (bit 1)
        RegC = 0x0c,      // r   interrupt flags (always 0)
        RegD = 0x0d,      // r   VRT (bit 7: the clock's battery is good)
        Century = 0x32,   // r   century (BCD or binary as the rest)
    };

private:
    std::uint8_t read_reg(std::uint8_t reg);
    std::uint8_t encode(unsigned value) const;

    std::function<std::time_t()> m_now;
    std::mutex m_lock;
    std::uint8_t m_index { 0 };
    std::array<std::uint8_t, 128> m_ram {};
};

} // namespace strata
