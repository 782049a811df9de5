#include "vmm/boot/acpi.h"

#include "vmm/layout.h"

#include <cstring>
#include <string_view>

namespace strata {

namespace {

constexpr std::size_t header_size = 36;

class Blob {
public:
    std::size_t size() const { return m_bytes.size(); }
    void align(std::size_t to)
    {
        while (m_bytes.size() % to)
            m_bytes.push_back(std::byte { 0 });
    }
    void put_bytes(std::string_view s) { for (char c : s) m_bytes.push_back(static_cast<std::byte>(c)); }
    void put_raw(std::vector<std::byte> const& v) { m_bytes.insert(m_bytes.end(), v.begin(), v.end()); }
    void put8(std::uint64_t v) { m_bytes.push_back(static_cast<std::byte>(v & 0xff)); }
    void put16(std::uint64_t v) { put8(v); put8(v >> 8); }
    void put32(std::uint64_t v) { put16(v); put16(v >> 16); }
    void put64(std::uint64_t v) { put32(v); put32(v >> 32); }
    void zeros(std::size_t n) { m_bytes.insert(m_bytes.end(), n, std::byte { 0 }); }
    void set32(std::size_t at, std::uint32_t v)
    {
        for (int i = 0; i < 4; ++i)
            m_bytes[at + static_cast<std::size_t>(i)] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
    }
    void set64(std::size_t at, std::uint64_t v)
    {
        set32(at, static_cast<std::uint32_t>(v));
        set32(at + 4, static_cast<std::uint32_t>(v >> 32));
    }
    void set8(std::size_t at, std::uint8_t v) { m_bytes[at] = static_cast<std::byte>(v); }
    std::byte const* at(std::size_t offset) const { return m_bytes.data() + offset; }
    std::vector<std::byte> take() { return std::move(m_bytes); }

    // Starts a table: writes a header with zero length and checksum, returns its offset.
    std::size_t begin_table(std::string_view signature, std::uint8_t revision)
    {
        align(16);
        std::size_t start = size();
        put_bytes(signature);
        put32(0);        // length, patched by end_table
        put8(revision);
        put8(0);         // checksum, patched by end_table
        put_bytes("STRATA");
        put_bytes("STRATAVM");
        put32(1);        // OEM revision
        put_bytes("STRA"); // creator id
        put32(1);        // creator revision
        return start;
    }
    void end_table(std::size_t start)
    {
        auto length = static_cast<std::uint32_t>(size() - start);
        set32(start + 4, length);
        set8(start + 9, acpi_checksum(at(start), length));
    }

private:
    std::vector<std::byte> m_bytes;
};

} // namespace

std::uint8_t acpi_checksum(std::byte const* data, std::size_t length)
{
    std::uint8_t sum = 0;
    for (std::size_t i = 0; i < length; ++i)
        sum = static_cast<std::uint8_t>(sum + static_cast<std::uint8_t>(data[i]));
    return static_cast<std::uint8_t>(0x100 - sum);
}

std::vector<std::byte> build_acpi_tables(AcpiConfig const& config, std::uint64_t base)
{
    Blob b;
    // RSDP, revision 2; addresses patched once the other tables are placed.
    b.put_bytes("RSD PTR ");
    b.put8(0);
    b.put_bytes("STRATA");
    b.put8(2);
    b.put32(0); // RSDT address: none, the XSDT serves
    b.put32(36);
    b.put64(0); // XSDT address
    b.put8(0);
    b.zeros(3);

    std::size_t dsdt = b.begin_table("DSDT", 2);
    b.put_raw(config.dsdt_aml);
    b.end_table(dsdt);

    std::size_t fadt = b.begin_table("FACP", 6);
    b.zeros(276 - header_size);
    b.set32(fadt + 40, 0);                                 // DSDT (32-bit): use X_DSDT
    // IAPC_BOOT_ARCH: no VGA (bit 2). The 8042 bit (1) stays clear although strata
    // has an i8042 for resets: told of one, Linux's i8042 driver probes it, finds
    // no IRQ 1 on this hardware-reduced platform and fails after about 1.9 s of
    // command timeouts; reboot=k reaches the reset line without the driver (QEMU
    // microvm leaves the bit clear too).
    b.set8(fadt + 109, 1u << 2);
    b.set32(fadt + 112, 1u << 20);                         // flags: HW_REDUCED_ACPI
    b.set8(fadt + 131, 4);                                 // FADT minor version
    b.set64(fadt + 140, base + dsdt);                      // X_DSDT
    b.set64(fadt + 268, 0x5354524154414d56ull);            // hypervisor vendor identity
    b.end_table(fadt);

    std::size_t madt = b.begin_table("APIC", 5);
    b.put32(layout::lapic_base);
    b.put32(1); // PCAT_COMPAT: the 8259 PICs exist (in KVM's irqchip)
    for (std::uint32_t cpu = 0; cpu < config.vcpus; ++cpu) {
        b.put8(0); // processor local APIC
        b.put8(8);
        b.put8(cpu); // ACPI processor UID
        b.put8(cpu); // APIC id
        b.put32(1);  // enabled
    }
    b.put8(1); // IOAPIC
    b.put8(12);
    b.put8(config.vcpus); // IOAPIC id after the CPUs' ids
    b.put8(0);
    b.put32(layout::ioapic_base);
    b.put32(0); // global system interrupt base
    b.end_table(madt);

    std::size_t xsdt = b.begin_table("XSDT", 1);
    b.put64(base + fadt);
    b.put64(base + madt);
    b.end_table(xsdt);

    b.set64(24, base + xsdt);
    b.set8(8, acpi_checksum(b.at(0), 20));
    b.set8(32, acpi_checksum(b.at(0), 36));
    return b.take();
}

Result<std::uint64_t> write_acpi_tables(GuestMemory const& memory, AcpiConfig const& config)
{
    if (config.vcpus > 254)
        return make_error(ErrorKind::Usage, "at most 254 vCPUs are supported");
    auto blob = build_acpi_tables(config, layout::bios_start);
    if (blob.size() > layout::bios_end - layout::bios_start)
        return make_error(ErrorKind::Internal, "ACPI tables do not fit in the BIOS area");
    STRATA_TRY(memory.write_bytes(layout::bios_start, blob));
    return layout::bios_start;
}

} // namespace strata
