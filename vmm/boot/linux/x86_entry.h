// The CPU state a Linux boot protocol enters with, described as data and applied
// to KVM's register structures, plus the guest tables that state points at.
//
// 64-bit boot protocol (boot.rst "64-bit Boot Protocol"): long mode with paging,
// an identity map covering the kernel, zero page, command line and initrd (strata
// maps the whole low 4 GiB with 2 MiB pages), a GDT whose __BOOT_CS (0x10) is a
// 64-bit code segment and __BOOT_DS (0x18) a flat data segment, CS = __BOOT_CS,
// DS/ES/SS = __BOOT_DS, interrupts off, %rsi = the zero page.
// PVH (xen start_info.h / boot.rst): 32-bit protected mode, paging off, flat
// segments, %ebx = hvm_start_info.
// The tables sit in low RAM that the kernel reclaims once it runs on its own ones
// (vmm/layout.h leaves 0x8000-0x9f000 to the guest).
// Threading: pure functions over a GuestMemory.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"

#include <linux/kvm.h>

#include <cstdint>

namespace strata::linux_boot {

inline constexpr std::uint64_t kBootGdt = 0x8000;       // 5 descriptors
inline constexpr std::uint64_t kBootStackTop = 0x8ff0;  // a small stack below the page tables
inline constexpr std::uint64_t kBootPml4 = 0x9000;
inline constexpr std::uint64_t kBootPdpt = 0xa000;
inline constexpr std::uint64_t kBootPd = 0xb000;        // 4 page directories: 0xb000-0xefff
inline constexpr std::uint64_t kIdentityMapped = 4ull << 30;

inline constexpr std::uint16_t kBootCs = 0x10;
inline constexpr std::uint16_t kBootDs = 0x18;
inline constexpr std::uint16_t kBootTss = 0x20;

struct SegmentState {
    std::uint16_t selector;
    std::uint64_t base;
    std::uint32_t limit;
    std::uint8_t type;
    std::uint8_t s;  // code/data (1) or system (0)
    std::uint8_t dpl;
    std::uint8_t present;
    std::uint8_t db; // 32-bit default operand size
    std::uint8_t l;  // 64-bit code
    std::uint8_t g;  // 4 KiB granularity
};

enum class EntryMode {
    Long64,      // Linux 64-bit boot protocol
    Protected32, // PVH
};

struct EntryState {
    EntryMode mode { EntryMode::Long64 };
    std::uint64_t rip { 0 };
    std::uint64_t rsi { 0 };
    std::uint64_t rbx { 0 };
    std::uint64_t rsp { 0 };
    std::uint64_t rflags { 0x2 }; // IF clear: interrupts off
    std::uint64_t cr0 { 0 };
    std::uint64_t cr3 { 0 };
    std::uint64_t cr4 { 0 };
    std::uint64_t efer { 0 };
    std::uint64_t gdt_base { kBootGdt };
    std::uint16_t gdt_limit { 5 * 8 - 1 };
    SegmentState code {};
    SegmentState data {}; // DS, ES, FS, GS and SS
    SegmentState tss {};
};

// Writes the boot GDT and, for Long64, the identity-mapping page tables; returns
// the state to enter `entry` with `boot_info` in %rsi (Long64) or %ebx (PVH).
[[nodiscard]] Result<EntryState> prepare_entry(GuestMemory const& mem, EntryMode mode, std::uint64_t entry,
    std::uint64_t boot_info);

// Copies the state into KVM's structures. Call KVM_GET_REGS/KVM_GET_SREGS first,
// then this, then KVM_SET_REGS/KVM_SET_SREGS: fields the state does not name
// (APIC base, interrupt bitmap, debug registers) keep KVM's values.
void apply_entry_state(EntryState const& state, kvm_regs& regs, kvm_sregs& sregs);

} // namespace strata::linux_boot
