// PCI configuration space through 0xCF8/0xCFC: the host bridge, empty slots, BAR
// size probing and relocation, read-only fields, the MSI-X table and PBA.
#include "devices/pci/msix.h"
#include "devices/pci/pci_bus.h"
#include "tests/devices/pci_test_helpers.h"

#include <doctest/doctest.h>

using namespace strata;
using namespace strata::pci;
using strata::test::PciPorts;
using strata::test::RecordingMsi;

namespace {

class TestFunction final : public PciDevice {
public:
    TestFunction()
        : config(PciIdentity { .vendor = 0x1234, .device = 0x5678, .class_code = 0x018000, .revision = 1 })
    {
        config.add_bar64(0, 0x8000, 0xe0000000);
    }
    void config_read(std::uint64_t offset, std::span<std::byte> data) override { config.read(offset, data); }
    void config_write(std::uint64_t offset, std::span<std::byte const> data) override { config.write(offset, data); }
    PciConfigSpace config;
};

} // namespace

TEST_CASE("host bridge at 00:00.0, empty slots and other functions read all ones")
{
    PciBus bus;
    PciPorts ports(bus);
    CHECK(ports.read32(0, 0) == 0x0d578086);
    CHECK((ports.read32(0, 8) >> 8) == 0x060000);
    CHECK(ports.read32(1, 0) == 0xffffffff);
    ports.select(0, 0, 1); // function 1
    std::uint32_t v = 0;
    bus.read(4, std::as_writable_bytes(std::span(&v, 1)));
    CHECK(v == 0xffffffff);
    // CONFIG_ADDRESS reads back what was written, minus the reserved low bits.
    ports.select(3, 0x10);
    bus.read(0, std::as_writable_bytes(std::span(&v, 1)));
    CHECK(v == (0x80000000u | (3u << 11) | 0x10));
    // Without the enable bit nothing answers.
    std::uint32_t off = 0;
    bus.write(0, std::as_bytes(std::span(&off, 1)));
    bus.read(4, std::as_writable_bytes(std::span(&v, 1)));
    CHECK(v == 0xffffffff);
}

TEST_CASE("a function's identity, read-only fields and byte/word accesses")
{
    PciBus bus;
    TestFunction f;
    REQUIRE(bus.add(f).value() == 1);
    PciPorts ports(bus);
    CHECK(ports.read32(1, 0) == 0x56781234);
    CHECK(ports.read(1, 2, 2) == 0x5678);
    CHECK(ports.read(1, 0x0b, 1) == 0x01);
    ports.write(1, 0, 0xffffffff);
    CHECK(ports.read32(1, 0) == 0x56781234);
    ports.write(1, 0x3c, 0x0b, 1);
    CHECK(ports.read(1, 0x3c, 1) == 0x0b);
    ports.write(1, 4, 0x2, 2);
    CHECK(f.config.memory_enabled());
}

TEST_CASE("BAR size probing with all ones, and relocation reported only while decoding")
{
    PciBus bus;
    TestFunction f;
    REQUIRE(bus.add(f));
    PciPorts ports(bus);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> moves;
    f.config.set_relocation_handler([&](unsigned bar, std::uint64_t o, std::uint64_t n) {
        CHECK(bar == 0);
        moves.emplace_back(o, n);
    });
    CHECK(ports.read32(1, 0x10) == 0xe0000004);
    CHECK(ports.read32(1, 0x14) == 0);
    // Probe as Linux does: decoding off, write ones, read, restore.
    ports.write(1, 0x10, 0xffffffff);
    ports.write(1, 0x14, 0xffffffff);
    std::uint64_t probed = (std::uint64_t(ports.read32(1, 0x14)) << 32) | (ports.read32(1, 0x10) & ~0xfULL);
    CHECK(~probed + 1 == 0x8000);
    ports.write(1, 0x10, 0xe0000000);
    ports.write(1, 0x14, 0);
    ports.write(1, 4, 2, 2); // memory decoding on, at the original address
    CHECK(moves.empty());
    // Move it above 4 GiB while decoding: one report per change of the full address.
    ports.write(1, 4, 0, 2);
    ports.write(1, 0x10, 0x00010000);
    ports.write(1, 0x14, 0x1);
    ports.write(1, 4, 2, 2);
    REQUIRE(moves.size() == 1);
    CHECK(moves[0].first == 0xe0000000);
    CHECK(moves[0].second == 0x100010000);
    CHECK(f.config.bar_address(0) == 0x100010000);
    // Misaligned low bits are dropped (the BAR is 32 KiB).
    ports.write(1, 0x10, 0x00011234);
    CHECK((ports.read32(1, 0x10) & ~0xfu) == 0x00010000);
}

TEST_CASE("MSI-X table: masking, pending bits, routes and delivery")
{
    RecordingMsi sink;
    MsixTable t(3, sink);
    auto w32 = [&](std::uint64_t off, std::uint32_t v) { t.table_write(off, std::as_bytes(std::span(&v, 1))); };
    auto r32 = [&](std::uint64_t off) {
        std::uint32_t v = 0;
        t.table_read(off, std::as_writable_bytes(std::span(&v, 1)));
        return v;
    };
    auto pba = [&] {
        std::uint64_t v = 0;
        t.pba_read(0, std::as_writable_bytes(std::span(&v, 1)));
        return v;
    };
    CHECK(r32(12) == 1); // vectors start masked
    CHECK(!t.fire(0));   // disabled: caller falls back
    t.set_control(MsixControlEnable);
    w32(16, 0xfee00000);
    w32(20, 0);
    w32(24, 0x4041);
    CHECK(r32(24) == 0x4041);
    // Masked: the fire becomes a pending bit.
    CHECK(t.fire(1));
    CHECK(sink.fired.empty());
    CHECK(pba() == 2);
    // Unmasking delivers the pending interrupt with the programmed message.
    sink.routes.clear();
    w32(28, 0);
    REQUIRE(sink.fired.size() == 1);
    CHECK(sink.fired[0].vector == 1);
    CHECK(sink.fired[0].message.address == 0xfee00000);
    CHECK(sink.fired[0].message.data == 0x4041);
    CHECK(pba() == 0);
    REQUIRE(!sink.routes.empty());
    CHECK(!sink.routes.back().masked);
    // Function mask holds everything back, then releases it.
    t.set_control(MsixControlEnable | MsixControlFunctionMask);
    CHECK(t.fire(1));
    CHECK(sink.fired.size() == 1);
    t.set_control(MsixControlEnable);
    CHECK(sink.fired.size() == 2);
    // Bad accesses are ignored.
    std::uint16_t half = 0xffff;
    t.table_write(16, std::as_bytes(std::span(&half, 1)));
    CHECK(r32(16) == 0xfee00000);
    w32(3 * 16, 1); // beyond the table
    CHECK(r32(3 * 16) == 0);
}
