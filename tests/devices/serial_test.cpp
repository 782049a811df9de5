// The 16550's transmit-empty interrupt as Linux's 8250 driver probes and uses it
// (serial8250_do_startup): enabling THRI with the transmitter idle raises it at
// once, reading IIR clears it, enabling it again raises it again (else the driver
// marks the UART UART_BUG_THRE and polls with a timer), and each byte written
// while THRI is enabled raises it again so the interrupt handler sends the rest.
#include "devices/legacy/serial.h"

#include <doctest/doctest.h>

#include <cstddef>

using namespace strata;

namespace {

struct Uart {
    int raised { 0 };
    Serial serial { -1, [this] { ++raised; } };

    std::uint8_t in(std::uint64_t reg)
    {
        std::byte b {};
        serial.read(reg, std::span<std::byte>(&b, 1));
        return static_cast<std::uint8_t>(b);
    }
    void out(std::uint64_t reg, std::uint8_t v)
    {
        auto b = static_cast<std::byte>(v);
        serial.write(reg, std::span<std::byte const>(&b, 1));
    }
};

constexpr std::uint64_t thr = 0, ier = 1, iir = 2, lsr = 5;
constexpr std::uint8_t thri = 0x02;

} // namespace

TEST_CASE("THR-empty: raised when enabled on an idle transmitter, cleared by reading IIR, raised again on re-enable")
{
    Uart u;
    CHECK((u.in(iir) & 0x0f) == 0x01); // nothing pending
    u.out(ier, thri);
    CHECK(u.raised == 1);
    CHECK((u.in(lsr) & 0x60) == 0x60); // THRE and TEMT
    CHECK((u.in(iir) & 0x0f) == 0x02); // THR empty
    CHECK((u.in(iir) & 0x0f) == 0x01); // the read cleared it
    u.out(ier, 0);
    u.out(ier, thri);
    CHECK(u.raised == 2);
    CHECK((u.in(iir) & 0x0f) == 0x02);
}

TEST_CASE("THR-empty: each byte sent with THRI enabled raises it again, none with THRI disabled")
{
    Uart u;
    u.out(ier, thri);
    (void)u.in(iir);
    int before = u.raised;
    u.out(thr, 'a');
    CHECK(u.raised == before + 1);
    CHECK((u.in(iir) & 0x0f) == 0x02);
    u.out(ier, 0);
    before = u.raised;
    u.out(thr, 'b');
    CHECK(u.raised == before);
    CHECK((u.in(iir) & 0x0f) == 0x01);
}
