// The ACPI tables strata writes: checksums, the RSDP -> XSDT -> MADT chain, one
// enabled local APIC per vCPU with ids 0..n-1, and the IOAPIC.
#include "vmm/boot/acpi.h"
#include "vmm/layout.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using namespace strata;

namespace {

std::uint32_t u32(std::vector<std::byte> const& b, std::size_t at)
{
    std::uint32_t v;
    std::memcpy(&v, b.data() + at, 4);
    return v;
}
std::uint64_t u64(std::vector<std::byte> const& b, std::size_t at)
{
    std::uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return v;
}
std::string sig(std::vector<std::byte> const& b, std::size_t at, std::size_t n)
{
    return std::string(reinterpret_cast<char const*>(b.data() + at), n);
}
bool sums_to_zero(std::vector<std::byte> const& b, std::size_t at, std::size_t n)
{
    unsigned sum = 0;
    for (std::size_t i = 0; i < n; ++i)
        sum += static_cast<unsigned>(b[at + i]);
    return (sum & 0xff) == 0;
}

} // namespace

TEST_CASE("RSDP, XSDT, FADT and MADT are well formed for 1 to 8 vCPUs")
{
    std::uint64_t const base = layout::bios_start;
    for (std::uint32_t vcpus : { 1u, 2u, 8u }) {
        auto blob = build_acpi_tables(AcpiConfig { vcpus, {} }, base);
        CHECK(sig(blob, 0, 8) == "RSD PTR ");
        CHECK(sums_to_zero(blob, 0, 20));
        CHECK(sums_to_zero(blob, 0, 36));
        CHECK(static_cast<int>(blob[15]) == 2);
        auto xsdt = static_cast<std::size_t>(u64(blob, 24) - base);
        CHECK(sig(blob, xsdt, 4) == "XSDT");
        auto xsdt_len = u32(blob, xsdt + 4);
        CHECK(sums_to_zero(blob, xsdt, xsdt_len));
        REQUIRE(xsdt_len == 36 + 16);

        auto fadt = static_cast<std::size_t>(u64(blob, xsdt + 36) - base);
        CHECK(sig(blob, fadt, 4) == "FACP");
        CHECK(u32(blob, fadt + 4) == 276);
        CHECK(sums_to_zero(blob, fadt, 276));
        CHECK((u32(blob, fadt + 112) & (1u << 20)) != 0); // hardware-reduced
        // No 8042 announced (Linux would probe it for seconds, finding no IRQ 1).
        CHECK((static_cast<unsigned>(blob[fadt + 109]) & 0x02) == 0);
        auto dsdt = static_cast<std::size_t>(u64(blob, fadt + 140) - base);
        CHECK(sig(blob, dsdt, 4) == "DSDT");
        CHECK(sums_to_zero(blob, dsdt, u32(blob, dsdt + 4)));

        auto madt = static_cast<std::size_t>(u64(blob, xsdt + 44) - base);
        CHECK(sig(blob, madt, 4) == "APIC");
        auto madt_len = u32(blob, madt + 4);
        CHECK(sums_to_zero(blob, madt, madt_len));
        CHECK(u32(blob, madt + 36) == layout::lapic_base);
        std::size_t at = madt + 44;
        std::uint32_t cpus = 0;
        bool ioapic = false;
        while (at < madt + madt_len) {
            auto type = static_cast<int>(blob[at]);
            auto len = static_cast<std::size_t>(blob[at + 1]);
            REQUIRE(len >= 2);
            if (type == 0) {
                CHECK(static_cast<std::uint32_t>(blob[at + 3]) == cpus); // APIC id
                CHECK(u32(blob, at + 4) == 1);                            // enabled
                ++cpus;
            } else if (type == 1) {
                ioapic = true;
                CHECK(u32(blob, at + 4) == layout::ioapic_base);
                CHECK(u32(blob, at + 8) == 0);
            }
            at += len;
        }
        CHECK(cpus == vcpus);
        CHECK(ioapic);
    }
}
