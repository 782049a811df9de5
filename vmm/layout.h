// The guest-physical address map every strata VM uses. RAM fills [0, 3 GiB); any
// more RAM lives from 4 GiB up, above the 32-bit MMIO hole, where the virtio
// devices, the IOAPIC and the local APICs sit. The low megabyte keeps the PC's
// shape (RAM to 0x9fc00, then the EBDA/BIOS area holding ACPI tables), and the
// boot information the loaders write sits in fixed pages below 0x8000, leaving
// 0x8000-0x9f000 free for a guest's own use (an AP trampoline, say).
// Threading: constants only.
#pragma once

#include <cstdint>

namespace strata::layout {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr std::uint64_t GiB = 1024 * MiB;

// Boot information written by the loaders.
constexpr std::uint64_t zero_page = 0x1000;       // Linux boot_params
constexpr std::uint64_t pvh_start_info = 0x2000;  // hvm_start_info
constexpr std::uint64_t pvh_memmap = 0x2100;      // hvm_memmap_table_entry[]
constexpr std::uint64_t pvh_modules = 0x2800;     // hvm_modlist_entry[]
constexpr std::uint64_t cmdline = 0x3000;         // up to cmdline_max bytes
constexpr std::uint64_t cmdline_max = 0x4000;     // 16 KiB, with the NUL
constexpr std::uint64_t low_ram_end = 0x9fc00;    // start of the EBDA
constexpr std::uint64_t vmgenid_guid = 0xa0000;   // the VM generation ID (16 bytes; reserved, a page of its own)
constexpr std::uint64_t bios_start = 0xe0000;     // ACPI tables live here
constexpr std::uint64_t bios_end = 0x100000;
constexpr std::uint64_t high_memory = 0x100000;   // kernels and firmware load at or above 1 MiB

constexpr std::uint64_t mmio_hole_start = 3 * GiB;
constexpr std::uint64_t mmio_hole_end = 4 * GiB;
constexpr std::uint64_t virtio_mmio_base = 0xd0000000; // 4 KiB per device
constexpr std::uint64_t virtio_mmio_stride = 0x1000;
constexpr std::uint32_t virtio_mmio_first_irq = 5;
constexpr std::uint64_t pci_mmio_base = 0xe0000000;    // BARs of PCI devices
constexpr std::uint64_t pci_mmio_end = 0xfec00000;
constexpr std::uint64_t ioapic_base = 0xfec00000;
constexpr std::uint64_t lapic_base = 0xfee00000;

// Legacy ports.
constexpr std::uint16_t port_serial0 = 0x3f8;
constexpr std::uint32_t irq_serial0 = 4;
constexpr std::uint16_t port_rtc = 0x70;       // 0x70 (index) and 0x71 (data)
constexpr std::uint32_t irq_rtc = 8;
constexpr std::uint32_t irq_ged = 3;           // the ACPI GED's line: VM generation ID notifications (COM2's IRQ, unused)
constexpr std::uint16_t port_i8042 = 0x60;     // 0x60 and 0x64
constexpr std::uint16_t port_debug_exit = 0xf4; // QEMU's isa-debug-exit
constexpr std::uint16_t port_pci_config = 0xcf8; // 0xcf8-0xcff

} // namespace strata::layout
