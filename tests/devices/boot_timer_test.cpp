// The boot-complete port (devices/legacy/boot_timer.h) through the port bus: only
// the byte 123 at offset 0 counts, and only the first time.
#include "devices/bus.h"
#include "devices/legacy/boot_timer.h"

#include <doctest/doctest.h>

using namespace strata;

TEST_CASE("boot timer: the first write of 123 to port 0x3f0 fires once")
{
    Bus pio("port bus");
    int fired = 0;
    BootTimer timer([&] { ++fired; });
    REQUIRE(pio.insert(timer, BootTimer::Port, 1));
    auto out = [&](std::uint8_t v) {
        std::byte b { v };
        pio.write(BootTimer::Port, std::span(&b, 1));
    };
    out(122);
    out(0);
    CHECK(fired == 0);
    std::byte got { 0xff };
    pio.read(BootTimer::Port, std::span(&got, 1));
    CHECK(got == std::byte { 0 });
    out(123);
    CHECK(fired == 1);
    out(123);
    out(123);
    CHECK(fired == 1);
}
