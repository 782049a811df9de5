// The vmm/boot/ folder: what a guest finds in RAM when its first vCPU starts. The
// ACPI tables (this header), the ELF/PVH loaders and the e820 map (loader/), and
// Linux boot (linux/: bzImage, vmlinux and PVH kernels, host-side decompression).
//
// ACPI tables strata writes for the guest: RSDP (revision 2), XSDT, a hardware-
// reduced FADT, a DSDT, and the MADT listing one local APIC per vCPU and the
// IOAPIC. They sit in the reserved BIOS area at 0xE0000, where a guest that scans
// for "RSD PTR " finds them; PVH guests also get the RSDP address directly.
// Reference: ACPI 6.4 §5.2 (RSDP, XSDT, FADT, MADT).
// Threading: pure functions.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace strata {

struct AcpiConfig {
    std::uint32_t vcpus { 1 };
    // AML for the DSDT body (device objects); empty gives a DSDT with no devices.
    std::vector<std::byte> dsdt_aml;
};

// Builds the tables as one blob meant to be copied to guest address `base`.
// Returns the blob; the RSDP is at offset 0.
[[nodiscard]] std::vector<std::byte> build_acpi_tables(AcpiConfig const& config, std::uint64_t base);

// Writes the tables at layout::bios_start and returns the RSDP's address.
[[nodiscard]] Result<std::uint64_t> write_acpi_tables(GuestMemory const& memory, AcpiConfig const& config);

// The byte that makes a table's bytes sum to zero.
std::uint8_t acpi_checksum(std::byte const* data, std::size_t length);

} // namespace strata
