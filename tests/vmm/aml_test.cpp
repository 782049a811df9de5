// The DSDT body (vmm/aml.h): the AML encodings it is made of, and the devices a
// stock kernel needs from it on a hardware-reduced platform: COM1 with IRQ 4 (without
// it Linux gives ttyS0 no interrupt and user space's console writes fail), one
// LNRO0005 device per virtio-mmio region, and the PCI host bridge.
#include "vmm/boot/aml.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace strata;
using Bytes = std::vector<std::byte>;

namespace {

Bytes bytes(std::initializer_list<unsigned> list)
{
    Bytes b;
    for (unsigned v : list)
        b.push_back(static_cast<std::byte>(v));
    return b;
}

std::size_t count(Bytes const& hay, Bytes const& needle)
{
    std::size_t n = 0;
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
        if (std::memcmp(hay.data() + i, needle.data(), needle.size()) == 0)
            ++n;
    return n;
}

Bytes text(std::string const& s)
{
    Bytes b;
    for (char c : s)
        b.push_back(static_cast<std::byte>(c));
    return b;
}

// Decodes the PkgLength at `at`: returns the length it encodes and sets `used`.
std::size_t decode_package_length(Bytes const& b, std::size_t at, std::size_t& used)
{
    auto lead = static_cast<unsigned>(b[at]);
    std::size_t extra = lead >> 6;
    used = 1 + extra;
    if (extra == 0)
        return lead & 0x3f;
    std::size_t v = lead & 0x0f;
    for (std::size_t i = 0; i < extra; ++i)
        v |= static_cast<std::size_t>(b[at + 1 + i]) << (4 + 8 * i);
    return v;
}

} // namespace

TEST_CASE("PkgLength: one byte up to 62 bytes of body, then the multi-byte forms")
{
    CHECK(aml::package_length(0) == bytes({ 0x01 }));
    CHECK(aml::package_length(62) == bytes({ 0x3f }));
    // 63 bytes of body + 2 length bytes = 65 = 0x41: lead 0x40 | 1, then 0x04.
    CHECK(aml::package_length(63) == bytes({ 0x41, 0x04 }));
    for (std::size_t body : { 100u, 4093u, 4094u, 70000u, 1048573u, 1048574u }) {
        auto enc = aml::package_length(body);
        std::size_t used = 0;
        CHECK(decode_package_length(enc, 0, used) == body + enc.size());
        CHECK(used == enc.size());
    }
}

TEST_CASE("EISA ids are compressed as ACPI and iasl encode them")
{
    CHECK(aml::eisa_id("PNP0501") == 0x0105d041u);
    CHECK(aml::eisa_id("PNP0A03") == 0x030ad041u);
}

TEST_CASE("the DSDT describes COM1 with IRQ 4 and each virtio-mmio region with its GSI")
{
    aml::DsdtDevices d;
    d.serial_ports.push_back({ 0x3f8, 4 });
    d.virtio_mmio.push_back({ 0xd0000000, 0x200, 5 });
    d.virtio_mmio.push_back({ 0xd0001000, 0x200, 6 });
    auto body = aml::build_dsdt_body(d);

    // Scope (\_SB) whose PkgLength covers exactly the rest of the body.
    REQUIRE(body.size() > 8);
    CHECK(body[0] == std::byte { 0x10 });
    std::size_t used = 0;
    CHECK(decode_package_length(body, 1, used) == body.size() - 1);
    CHECK(count(body, text("\\_SB_")) == 1);

    // COM1: _HID EisaId("PNP0501"), IO (Decode16, 0x3f8, 0x3f8, 1, 8), IRQNoFlags {4}.
    CHECK(count(body, bytes({ 0x5b, 0x82 })) == 3); // three Device objects
    CHECK(count(body, text("COM1")) == 1);
    CHECK(count(body, bytes({ 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01 })) == 1);
    CHECK(count(body, bytes({ 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08 })) == 1);
    CHECK(count(body, bytes({ 0x22, 0x10, 0x00 })) == 1);

    // virtio-mmio: _HID "LNRO0005", Memory32Fixed (RW, base, 0x200), Interrupt (edge, high) {gsi}.
    CHECK(count(body, text("LNRO0005")) == 2);
    CHECK(count(body, text("VR00")) == 1);
    CHECK(count(body, text("VR01")) == 1);
    CHECK(count(body, bytes({ 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00 })) == 1);
    CHECK(count(body, bytes({ 0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00 })) == 1);
    CHECK(count(body, bytes({ 0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00 })) == 1);
    CHECK(count(body, bytes({ 0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00 })) == 1);
    // Every resource template ends with the end tag.
    CHECK(count(body, bytes({ 0x79, 0x00 })) == 3);
    CHECK(count(body, text("PNP0A03")) == 0);
    CHECK(count(body, text("RTC_")) == 0);
}

TEST_CASE("the DSDT describes the CMOS clock (PNP0B00: ports 0x70-0x71, IRQ 8) when asked")
{
    aml::DsdtDevices d;
    d.rtc = aml::LegacyRtc { 0x70, 8 };
    auto body = aml::build_dsdt_body(d);
    CHECK(count(body, text("RTC_")) == 1);
    CHECK(count(body, bytes({ 0x0c, 0x41, 0xd0, 0x0b, 0x00 })) == 1); // EisaId("PNP0B00")
    CHECK(count(body, bytes({ 0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02 })) == 1);
    CHECK(count(body, bytes({ 0x22, 0x00, 0x01 })) == 1);
}

TEST_CASE("on the PCI transport the DSDT has a host bridge whose memory window holds the BARs")
{
    aml::DsdtDevices d;
    d.serial_ports.push_back({ 0x3f8, 4 });
    d.pci_host_bridge = true;
    d.pci = { 0xe0000000, 0xfec00000 };
    auto body = aml::build_dsdt_body(d);
    CHECK(count(body, text("PCI0")) == 1);
    CHECK(count(body, bytes({ 0x0c, 0x41, 0xd0, 0x0a, 0x03 })) == 1); // EisaId("PNP0A03")
    CHECK(count(body, text("LNRO0005")) == 0);
    // DWordMemory: producer, fixed, read-write, [0xe0000000, 0xfebfffff].
    CHECK(count(body, bytes({ 0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xe0, 0xff, 0xff, 0xbf, 0xfe })) == 1);
    // Bus 0 only, and the configuration ports 0xcf8-0xcff.
    CHECK(count(body, bytes({ 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00 })) == 1);
    CHECK(count(body, bytes({ 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08 })) == 1);
}

TEST_CASE("the VM generation ID device: VMGENCTR / VM_Gen_Counter, ADDR returning the address, a GED whose _EVT notifies it")
{
    aml::DsdtDevices d;
    CHECK(count(aml::build_dsdt_body(d), text("VGEN")) == 0); // only when asked
    d.vmgenid = aml::VmGenId { 0x1234'000a'0000ull, 3 };
    auto body = aml::build_dsdt_body(d);
    CHECK(count(body, text("VGEN")) == 2); // the device, and the notify's path
    auto with_nul = [](std::string const& s) {
        auto b = text(s);
        b.push_back(std::byte { 0 });
        return b;
    };
    CHECK(count(body, with_nul("VMGENCTR")) == 1);
    CHECK(count(body, with_nul("VM_Gen_Counter")) == 2); // _CID and _DDN
    // Method (ADDR, 0) { Return (Package (2) { 0x000a0000, 0x00001234 }) }
    Bytes addr = bytes({ 0x14, 0x14 });
    for (auto b : text("ADDR"))
        addr.push_back(b);
    for (auto b : bytes({ 0x00, 0xa4, 0x12, 0x0c, 0x02, 0x0c, 0x00, 0x00, 0x0a, 0x00, 0x0c, 0x34, 0x12, 0x00, 0x00 }))
        addr.push_back(b);
    CHECK(count(body, addr) == 1);
    CHECK(count(body, with_nul("ACPI0013")) == 1);
    // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 3 }
    CHECK(count(body, bytes({ 0x89, 0x06, 0x00, 0x03, 0x01, 0x03, 0x00, 0x00, 0x00 })) == 1);
    // Method (_EVT, 1) { Notify (\_SB.VGEN, 0x80) }
    Bytes evt = bytes({ 0x14, 0x13 });
    for (auto b : text("_EVT"))
        evt.push_back(b);
    for (auto b : bytes({ 0x01, 0x86, 0x5c, 0x2e }))
        evt.push_back(b);
    for (auto b : text("_SB_VGEN"))
        evt.push_back(b);
    for (auto b : bytes({ 0x0a, 0x80 }))
        evt.push_back(b);
    CHECK(count(body, evt) == 1);
}
