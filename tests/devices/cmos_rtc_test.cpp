// The CMOS clock reads the host's UTC time in the form register B asks, never
// reports an update in progress (Linux polls that bit before trusting the clock),
// and keeps the guest from setting the time or the read-only registers.
#include "devices/legacy/cmos_rtc.h"

#include <doctest/doctest.h>

using namespace strata;

namespace {

struct Clock {
    CmosRtc rtc;
    explicit Clock(std::time_t t)
        : rtc([t] { return t; })
    {
    }
    std::uint8_t get(std::uint8_t reg)
    {
        auto idx = static_cast<std::byte>(reg | 0x80); // NMI-mask bit set, as Linux does
        rtc.write(0, std::span<std::byte const>(&idx, 1));
        std::byte b {};
        rtc.read(1, std::span<std::byte>(&b, 1));
        return static_cast<std::uint8_t>(b);
    }
    void set(std::uint8_t reg, std::uint8_t v)
    {
        auto idx = static_cast<std::byte>(reg);
        rtc.write(0, std::span<std::byte const>(&idx, 1));
        auto b = static_cast<std::byte>(v);
        rtc.write(1, std::span<std::byte const>(&b, 1));
    }
};

} // namespace

TEST_CASE("CMOS clock: 2026-12-06 19:04:59 UTC (a Sunday) in BCD, 24-hour, then binary and 12-hour")
{
    Clock c(1796583899); // 2026-12-06T19:04:59Z
    CHECK(c.get(CmosRtc::Seconds) == 0x59);
    CHECK(c.get(CmosRtc::Minutes) == 0x04);
    CHECK(c.get(CmosRtc::Hours) == 0x19);
    CHECK(c.get(CmosRtc::Weekday) == 0x01);
    CHECK(c.get(CmosRtc::Day) == 0x06);
    CHECK(c.get(CmosRtc::Month) == 0x12);
    CHECK(c.get(CmosRtc::Year) == 0x26);
    CHECK(c.get(CmosRtc::Century) == 0x20);
    CHECK((c.get(CmosRtc::RegA) & 0x80) == 0); // no update in progress
    CHECK(c.get(CmosRtc::RegD) == 0x80);       // valid time

    c.set(CmosRtc::RegB, 0x04); // binary, 12-hour
    CHECK(c.get(CmosRtc::Seconds) == 59);
    CHECK(c.get(CmosRtc::Hours) == (0x80 | 7));
    CHECK(c.get(CmosRtc::Year) == 26);
    CHECK(c.get(CmosRtc::RegB) == 0x04);
}

TEST_CASE("CMOS clock: the guest cannot set the time or the read-only registers, other bytes are RAM")
{
    Clock c(1796583899);
    c.set(CmosRtc::Minutes, 0x33);
    CHECK(c.get(CmosRtc::Minutes) == 0x04);
    c.set(CmosRtc::RegD, 0x00);
    CHECK(c.get(CmosRtc::RegD) == 0x80);
    c.set(CmosRtc::RegA, 0xa6);
    CHECK(c.get(CmosRtc::RegA) == 0x26);
    c.set(0x40, 0x5a);
    CHECK(c.get(0x40) == 0x5a);
}
