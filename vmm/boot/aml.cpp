#include "vmm/boot/aml.h"

#include <cstdio>
#include <string>

namespace strata::aml {

namespace {

using Bytes = std::vector<std::byte>;

// AML opcodes and resource descriptor tags (ACPI 6.4 §20.3, §6.4).
constexpr std::uint8_t zero_op = 0x00;
constexpr std::uint8_t one_op = 0x01;
constexpr std::uint8_t name_op = 0x08;
constexpr std::uint8_t byte_prefix = 0x0a;
constexpr std::uint8_t word_prefix = 0x0b;
constexpr std::uint8_t dword_prefix = 0x0c;
constexpr std::uint8_t string_prefix = 0x0d;
constexpr std::uint8_t qword_prefix = 0x0e;
constexpr std::uint8_t scope_op = 0x10;
constexpr std::uint8_t buffer_op = 0x11;
constexpr std::uint8_t ext_op_prefix = 0x5b;
constexpr std::uint8_t device_op = 0x82; // after ext_op_prefix
constexpr std::uint8_t dual_name_prefix = 0x2e;
constexpr std::uint8_t package_op = 0x12;
constexpr std::uint8_t method_op = 0x14;
constexpr std::uint8_t notify_op = 0x86;
constexpr std::uint8_t return_op = 0xa4;
constexpr std::uint8_t root_char = 0x5c; // '\'

constexpr std::uint8_t res_irq_no_flags = 0x22;   // small IRQ descriptor, 2 bytes
constexpr std::uint8_t res_io = 0x47;             // small I/O port descriptor, 7 bytes
constexpr std::uint8_t res_end = 0x79;            // end tag, 1 byte (checksum)
constexpr std::uint8_t res_memory32_fixed = 0x86; // large, 9 bytes
constexpr std::uint8_t res_dword_space = 0x87;    // large, 23 bytes
constexpr std::uint8_t res_word_space = 0x88;     // large, 13 bytes
constexpr std::uint8_t res_ext_irq = 0x89;        // large, 2 + 4n bytes

void put8(Bytes& b, std::uint64_t v) { b.push_back(static_cast<std::byte>(v & 0xff)); }
void put16(Bytes& b, std::uint64_t v) { put8(b, v); put8(b, v >> 8); }
void put32(Bytes& b, std::uint64_t v) { put16(b, v); put16(b, v >> 16); }
void put64(Bytes& b, std::uint64_t v) { put32(b, v); put32(b, v >> 32); }
void append(Bytes& b, Bytes const& more) { b.insert(b.end(), more.begin(), more.end()); }

// A 4-character name segment; shorter names are padded with '_' as ASL does.
void put_nameseg(Bytes& b, std::string_view name)
{
    for (std::size_t i = 0; i < 4; ++i)
        put8(b, static_cast<std::uint8_t>(i < name.size() ? name[i] : '_'));
}

Bytes integer(std::uint64_t v)
{
    Bytes b;
    if (v == 0) {
        put8(b, zero_op);
    } else if (v == 1) {
        put8(b, one_op);
    } else if (v <= 0xff) {
        put8(b, byte_prefix);
        put8(b, v);
    } else if (v <= 0xffff) {
        put8(b, word_prefix);
        put16(b, v);
    } else if (v <= 0xffffffff) {
        put8(b, dword_prefix);
        put32(b, v);
    } else {
        put8(b, qword_prefix);
        put64(b, v);
    }
    return b;
}

Bytes string(std::string_view s)
{
    Bytes b;
    put8(b, string_prefix);
    for (char c : s)
        put8(b, static_cast<std::uint8_t>(c));
    put8(b, 0);
    return b;
}

Bytes name(std::string_view seg, Bytes const& value)
{
    Bytes b;
    put8(b, name_op);
    put_nameseg(b, seg);
    append(b, value);
    return b;
}

// A Buffer holding resource descriptors, closed by the end tag (checksum 0:
// "treat as if the checksum is valid").
Bytes resource_template(Bytes descriptors)
{
    put8(descriptors, res_end);
    put8(descriptors, 0);
    Bytes body = integer(descriptors.size());
    append(body, descriptors);
    Bytes b;
    put8(b, buffer_op);
    append(b, package_length(body.size()));
    append(b, body);
    return b;
}

// opcode(s) PkgLength name-or-nothing body.
Bytes package(Bytes opcode, Bytes head, Bytes const& body)
{
    append(head, body);
    append(opcode, package_length(head.size()));
    append(opcode, head);
    return opcode;
}

Bytes device(std::string_view seg, Bytes const& body)
{
    Bytes head;
    put_nameseg(head, seg);
    return package(Bytes { std::byte { ext_op_prefix }, std::byte { device_op } }, std::move(head), body);
}

Bytes eisa(std::string_view id)
{
    Bytes b;
    put8(b, dword_prefix);
    put32(b, eisa_id(id));
    return b;
}

void io_port(Bytes& r, std::uint16_t base, std::uint8_t length)
{
    put8(r, res_io);
    put8(r, 1); // decodes 16 address bits
    put16(r, base);
    put16(r, base);
    put8(r, 1); // alignment
    put8(r, length);
}

void irq_no_flags(Bytes& r, std::uint8_t irq)
{
    // The two-byte form: edge-triggered, active-high, exclusive (the ISA default).
    put8(r, res_irq_no_flags);
    put16(r, std::uint64_t { 1 } << irq);
}

void memory32_fixed(Bytes& r, std::uint32_t base, std::uint32_t length)
{
    put8(r, res_memory32_fixed);
    put16(r, 9);
    put8(r, 1); // read-write
    put32(r, base);
    put32(r, length);
}

void extended_irq(Bytes& r, std::uint32_t gsi)
{
    // Consumer (bit 0), edge-triggered (bit 1), active-high, exclusive: strata
    // injects these lines through irqfds, which signal edges.
    put8(r, res_ext_irq);
    put16(r, 6);
    put8(r, 0x03);
    put8(r, 1);
    put32(r, gsi);
}

// Word address space descriptor for a producer with fixed min and max.
void word_space(Bytes& r, std::uint8_t type, std::uint8_t type_flags, std::uint16_t min, std::uint16_t max)
{
    put8(r, res_word_space);
    put16(r, 13);
    put8(r, type);
    put8(r, 0x0c); // producer, positive decode, min and max fixed
    put8(r, type_flags);
    put16(r, 0); // granularity
    put16(r, min);
    put16(r, max);
    put16(r, 0); // translation
    put16(r, static_cast<std::uint64_t>(max) - min + 1);
}

void dword_memory(Bytes& r, std::uint32_t min, std::uint32_t max)
{
    put8(r, res_dword_space);
    put16(r, 23);
    put8(r, 0);    // memory
    put8(r, 0x0c); // producer, positive decode, min and max fixed
    put8(r, 0x01); // read-write, non-cacheable
    put32(r, 0);   // granularity
    put32(r, min);
    put32(r, max);
    put32(r, 0); // translation
    put32(r, static_cast<std::uint64_t>(max) - min + 1);
}

std::string numbered(char const* prefix, std::size_t n)
{
    char buf[8];
    std::snprintf(buf, sizeof buf, "%s%02zX", prefix, n & 0xff);
    return buf;
}

} // namespace

std::vector<std::byte> package_length(std::size_t body_length)
{
    Bytes b;
    if (body_length + 1 < 0x40) {
        put8(b, body_length + 1);
        return b;
    }
    // Multi-byte form: bits 7-6 of the lead byte count the bytes that follow,
    // its bits 3-0 are the length's low nibble, the rest follow 8 bits each.
    std::size_t extra = body_length + 2 < (1u << 12) ? 1 : body_length + 3 < (1u << 20) ? 2 : 3;
    std::size_t total = body_length + 1 + extra;
    put8(b, (extra << 6) | (total & 0x0f));
    for (std::size_t i = 0; i < extra; ++i)
        put8(b, total >> (4 + 8 * i));
    return b;
}

std::uint32_t eisa_id(std::string_view id)
{
    // Three letters of 5 bits each, then four hex digits; stored big-endian.
    auto letter = [&](std::size_t i) { return static_cast<std::uint32_t>(id[i] - 0x40) & 0x1f; };
    auto hex = [&](std::size_t i) {
        char c = id[i];
        return static_cast<std::uint32_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10) & 0xf;
    };
    std::uint32_t v = (letter(0) << 26) | (letter(1) << 21) | (letter(2) << 16) | (hex(3) << 12) | (hex(4) << 8)
        | (hex(5) << 4) | hex(6);
    return ((v >> 24) & 0xff) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | ((v << 24) & 0xff000000);
}

namespace {

// Method (seg, args, NotSerialized) { body }
Bytes method(std::string_view seg, std::uint8_t args, Bytes const& body)
{
    Bytes head;
    put_nameseg(head, seg);
    put8(head, args & 7);
    return package(Bytes { std::byte { method_op } }, std::move(head), body);
}

// Package () { elements... }
Bytes package_of(std::vector<Bytes> const& elements)
{
    Bytes head;
    put8(head, elements.size());
    Bytes body;
    for (auto const& e : elements)
        append(body, e);
    return package(Bytes { std::byte { package_op } }, std::move(head), body);
}

// The generation ID device and the event device that notifies it.
Bytes vmgenid_devices(VmGenId const& v)
{
    Bytes vgen = name("_HID", string("VMGENCTR"));
    append(vgen, name("_CID", string("VM_Gen_Counter")));
    append(vgen, name("_DDN", string("VM_Gen_Counter")));
    // Integers in their 32-bit form, whatever their value: a reader that looks
    // for the address (a firmware test) then meets one shape.
    auto dword = [](std::uint64_t v32) {
        Bytes b;
        put8(b, dword_prefix);
        put32(b, v32);
        return b;
    };
    Bytes ret;
    put8(ret, return_op);
    append(ret, package_of({ dword(v.guid_address & 0xffffffff), dword(v.guid_address >> 32) }));
    append(vgen, method("ADDR", 0, ret));
    Bytes out = device("VGEN", vgen);

    Bytes res;
    extended_irq(res, v.ged_gsi);
    Bytes ged = name("_HID", string("ACPI0013"));
    append(ged, name("_CRS", resource_template(std::move(res))));
    // _EVT (Arg0 = the GSI): one event line, one device to tell.
    Bytes notify;
    put8(notify, notify_op);
    put8(notify, root_char);
    put8(notify, dual_name_prefix);
    put_nameseg(notify, "_SB_");
    put_nameseg(notify, "VGEN");
    append(notify, integer(0x80));
    append(ged, method("_EVT", 1, notify));
    append(out, device("GED0", ged));
    return out;
}

} // namespace

std::vector<std::byte> build_dsdt_body(DsdtDevices const& devices)
{
    Bytes sb;
    for (std::size_t i = 0; i < devices.serial_ports.size(); ++i) {
        auto const& s = devices.serial_ports[i];
        Bytes res;
        io_port(res, s.port, 8);
        irq_no_flags(res, s.irq);
        Bytes body = name("_HID", eisa("PNP0501"));
        append(body, name("_UID", integer(i + 1)));
        append(body, name("_CRS", resource_template(std::move(res))));
        append(sb, device("COM" + std::to_string(i + 1), body));
    }
    if (devices.rtc) {
        Bytes res;
        io_port(res, devices.rtc->port, 2);
        irq_no_flags(res, devices.rtc->irq);
        Bytes body = name("_HID", eisa("PNP0B00"));
        append(body, name("_CRS", resource_template(std::move(res))));
        append(sb, device("RTC", body));
    }
    for (std::size_t i = 0; i < devices.virtio_mmio.size(); ++i) {
        auto const& d = devices.virtio_mmio[i];
        Bytes res;
        memory32_fixed(res, static_cast<std::uint32_t>(d.base), d.size);
        extended_irq(res, d.gsi);
        Bytes body = name("_HID", string("LNRO0005"));
        append(body, name("_UID", integer(i)));
        append(body, name("_CCA", integer(1))); // DMA is cache-coherent
        append(body, name("_CRS", resource_template(std::move(res))));
        append(sb, device(numbered("VR", i), body));
    }
    if (devices.pci_host_bridge) {
        Bytes res;
        word_space(res, 2, 0, 0, 0); // bus 0 only
        io_port(res, 0xcf8, 8);      // the configuration mechanism's ports
        word_space(res, 1, 0x03, 0x0000, 0x0cf7);
        word_space(res, 1, 0x03, 0x0d00, 0xffff);
        dword_memory(res, static_cast<std::uint32_t>(devices.pci.mmio_base), static_cast<std::uint32_t>(devices.pci.mmio_end - 1));
        Bytes body = name("_HID", eisa("PNP0A03"));
        append(body, name("_UID", integer(0)));
        append(body, name("_ADR", integer(0)));
        append(body, name("_BBN", integer(0)));
        append(body, name("_CRS", resource_template(std::move(res))));
        append(sb, device("PCI0", body));
    }
    if (devices.vmgenid)
        append(sb, vmgenid_devices(*devices.vmgenid));
    Bytes head;
    put8(head, root_char);
    put_nameseg(head, "_SB_");
    return package(Bytes { std::byte { scope_op } }, std::move(head), sb);
}

} // namespace strata::aml
