// GuestMemory bounds and overflow checks, the Bus's routing, and the 16550 and
// i8042 register behaviour, all without KVM.
#include "devices/bus.h"
#include "devices/guest_memory.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <vector>

using namespace strata;

TEST_CASE("GuestMemory checks every range against one region")
{
    std::vector<std::byte> low(0x1000), high(0x2000);
    GuestMemory mem({ { 0x10000, high.size(), high.data() }, { 0, low.size(), low.data() } });
    CHECK(mem.total_size() == 0x3000);

    CHECK(mem.slice(0, 0x1000).has_value());
    CHECK(mem.slice(0x1000, 0).has_value()); // empty range at the end of a region
    CHECK_FALSE(mem.slice(0xfff, 2).has_value()); // crosses the end of the region
    CHECK_FALSE(mem.slice(0x1000, 1).has_value()); // in the gap
    CHECK(mem.slice(0x10000, 0x2000).has_value());
    CHECK_FALSE(mem.slice(0x10000, 0x2001).has_value());
    // Overflow: gpa + len wraps around 2^64.
    CHECK_FALSE(mem.slice(0x10010, ~std::uint64_t(0)).has_value());
    CHECK_FALSE(mem.slice(~std::uint64_t(0), 2).has_value());
    CHECK_FALSE(mem.slice(~std::uint64_t(0) - 0x10, 0x20).has_value());

    REQUIRE(mem.write<std::uint32_t>(0x10004, 0xdeadbeef).has_value());
    CHECK(mem.read<std::uint32_t>(0x10004).value() == 0xdeadbeef);
    CHECK(static_cast<std::uint8_t>(high[4]) == 0xef);
    CHECK_FALSE(mem.read<std::uint64_t>(0xffc).has_value());
    auto err = mem.read<std::uint64_t>(0x5000);
    REQUIRE_FALSE(err.has_value());
    CHECK(err.error().message.find("outside guest memory") != std::string::npos);
}

namespace {
struct Recorder final : BusDevice {
    std::uint64_t last_offset { ~0ull };
    std::uint8_t last_value { 0 };
    void read(std::uint64_t offset, std::span<std::byte> data) override
    {
        last_offset = offset;
        for (auto& b : data)
            b = std::byte { 0x42 };
    }
    void write(std::uint64_t offset, std::span<std::byte const> data) override
    {
        last_offset = offset;
        last_value = static_cast<std::uint8_t>(data[0]);
    }
};
} // namespace

TEST_CASE("Bus routes by range, rejects overlaps, and floats unclaimed reads")
{
    Bus bus("test bus");
    Recorder a, b;
    REQUIRE(bus.insert(a, 0x100, 0x10).has_value());
    REQUIRE(bus.insert(b, 0x200, 0x10).has_value());
    CHECK_FALSE(bus.insert(b, 0x108, 0x10).has_value());
    CHECK_FALSE(bus.insert(b, 0xf8, 0x10).has_value());

    std::byte v { 7 };
    CHECK(bus.write(0x105, std::span<std::byte const>(&v, 1)));
    CHECK(a.last_offset == 5);
    CHECK(a.last_value == 7);
    std::byte out[2];
    CHECK(bus.read(0x20e, out));
    CHECK(b.last_offset == 0xe);
    CHECK_FALSE(bus.read(0x20f, out)); // straddles the end of b's range
    CHECK(static_cast<std::uint8_t>(out[0]) == 0xff);
    CHECK_FALSE(bus.read(0x300, out));
}

namespace {
std::uint8_t inb(Serial& s, std::uint64_t reg)
{
    std::byte b;
    s.read(reg, std::span<std::byte>(&b, 1));
    return static_cast<std::uint8_t>(b);
}
void outb(Serial& s, std::uint64_t reg, std::uint8_t v)
{
    std::byte b { v };
    s.write(reg, std::span<std::byte const>(&b, 1));
}
} // namespace

TEST_CASE("16550: transmit, receive, interrupts, divisor latch, loopback")
{
    int pipefd[2];
    REQUIRE(::pipe(pipefd) == 0);
    int irqs = 0;
    Serial serial(pipefd[1], [&] { ++irqs; });

    CHECK((inb(serial, 5) & 0x60) == 0x60); // THR empty and transmitter idle
    CHECK((inb(serial, 2) & 0x0f) == 0x01); // no interrupt pending

    outb(serial, 0, 'h');
    outb(serial, 0, 'i');
    char got[2];
    REQUIRE(::read(pipefd[0], got, 2) == 2);
    CHECK(std::string(got, 2) == "hi");

    // Divisor latch: DLAB redirects registers 0 and 1.
    outb(serial, 3, 0x80);
    outb(serial, 0, 0x01);
    outb(serial, 1, 0x00);
    CHECK(inb(serial, 0) == 0x01);
    outb(serial, 3, 0x03);
    CHECK(inb(serial, 3) == 0x03);

    // Receive with the data-available interrupt enabled.
    outb(serial, 1, 0x01);
    std::byte in[] = { std::byte { 'x' }, std::byte { 'y' } };
    CHECK(serial.queue_input(in) == 2);
    CHECK(irqs >= 1);
    CHECK((inb(serial, 5) & 0x01) == 0x01);
    CHECK((inb(serial, 2) & 0x0f) == 0x04);
    CHECK(inb(serial, 0) == 'x');
    CHECK(inb(serial, 0) == 'y');
    CHECK((inb(serial, 5) & 0x01) == 0);

    // Enabling THR-empty fires at once; reading IIR clears it.
    int before = irqs;
    outb(serial, 1, 0x02);
    CHECK(irqs == before + 1);
    CHECK((inb(serial, 2) & 0x0f) == 0x02);
    CHECK((inb(serial, 2) & 0x0f) == 0x01);

    // Loopback: transmitted bytes come back as input, and MSR mirrors MCR.
    outb(serial, 4, 0x1a);
    CHECK((inb(serial, 6) & 0xf0) == 0x90);
    outb(serial, 0, 'L');
    CHECK(inb(serial, 0) == 'L');

    // The receive buffer is bounded.
    outb(serial, 4, 0x08);
    std::vector<std::byte> flood(Serial::input_capacity + 100, std::byte { 'z' });
    CHECK(serial.queue_input(flood) == Serial::input_capacity);
    CHECK_FALSE(serial.wants_input());
    ::close(pipefd[0]);
    ::close(pipefd[1]);
}

TEST_CASE("i8042: 0xFE on the command port resets, self-test answers 0x55")
{
    int resets = 0;
    I8042 kbd([&] { ++resets; });
    std::byte cmd { 0xaa };
    kbd.write(4, std::span<std::byte const>(&cmd, 1));
    std::byte status, data;
    kbd.read(4, std::span<std::byte>(&status, 1));
    CHECK((static_cast<int>(status) & 1) == 1);
    kbd.read(0, std::span<std::byte>(&data, 1));
    CHECK(static_cast<int>(data) == 0x55);
    CHECK(resets == 0);
    std::byte reset { 0xfe };
    kbd.write(4, std::span<std::byte const>(&reset, 1));
    CHECK(resets == 1);
}
