// The DSDT's body: AML that describes the devices a stock kernel cannot find by
// itself. strata's FADT says the platform is hardware-reduced, and Linux then
// drops the PC's legacy interrupt setup (no 8259, no identity-mapped ISA IRQs):
// a device's interrupt exists for the kernel only once ACPI names it. So the DSDT
// carries COM1 (PNP0501: ports 0x3f8-0x3ff, IRQ 4), the CMOS clock (PNP0B00:
// ports 0x70-0x71, IRQ 8), one LNRO0005 device per
// virtio-mmio region (the binding QEMU microvm and Firecracker use; Linux's
// virtio_mmio driver matches it, also when the kernel lacks
// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), and, on the PCI transport, a PCI host
// bridge (PNP0A03) whose windows hold the BARs, so the kernel scans bus 0.
// Reference: ACPI 6.4 §19 (ASL/AML encoding), §6.4 (resource descriptors).
// Methods: only the two of the VM generation ID (ADDR, and the GED's _EVT).
// Not implemented: _PRT (virtio-pci uses MSI-X only), power events.
// Threading: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace strata::aml {

struct LegacySerial {
    std::uint16_t port;
    std::uint8_t irq;
};

struct LegacyRtc {
    std::uint16_t port;
    std::uint8_t irq;
};

struct MmioDevice {
    std::uint64_t base;
    std::uint32_t size;
    std::uint32_t gsi;
};

struct PciHostBridge {
    std::uint64_t mmio_base; // the 32-bit memory window for BARs, [base, end)
    std::uint64_t mmio_end;
};

// The VM generation ID device (Microsoft's "Virtual Machine Generation ID"
// paper; what Linux's vmgenid driver binds to): Device VGEN with _HID
// "VMGENCTR", _CID "VM_Gen_Counter" and a method ADDR returning Package
// { low, high } of the ID's guest-physical address (16 bytes in reserved RAM);
// and a Generic Event Device (ACPI0013) on `ged_gsi` whose _EVT notifies VGEN
// (0x80), so the VMM tells the guest of a new ID by pulsing that line.
struct VmGenId {
    std::uint64_t guid_address;
    std::uint32_t ged_gsi;
};

struct DsdtDevices {
    std::vector<LegacySerial> serial_ports;
    std::optional<LegacyRtc> rtc;
    std::vector<MmioDevice> virtio_mmio;
    bool pci_host_bridge { false };
    PciHostBridge pci {};
    std::optional<VmGenId> vmgenid;
};

// The AML of a `Scope (\_SB)` holding one Device per entry of `devices`.
[[nodiscard]] std::vector<std::byte> build_dsdt_body(DsdtDevices const& devices);

// Encoding helpers, exposed for the tests.
// A PkgLength prefix for a body of `body_length` bytes (ACPI 6.4 §20.2.4).
[[nodiscard]] std::vector<std::byte> package_length(std::size_t body_length);
// An EISA id ("PNP0501") in its compressed 32-bit form.
[[nodiscard]] std::uint32_t eisa_id(std::string_view id);

} // namespace strata::aml
