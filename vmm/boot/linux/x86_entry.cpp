#include "vmm/boot/linux/x86_entry.h"

#include <array>

namespace strata::linux_boot {

namespace {

constexpr std::uint64_t kCr0Pe = 1ull << 0;
constexpr std::uint64_t kCr0Et = 1ull << 4;
constexpr std::uint64_t kCr0Pg = 1ull << 31;
constexpr std::uint64_t kCr4Pae = 1ull << 5;
constexpr std::uint64_t kEferLme = 1ull << 8;
constexpr std::uint64_t kEferLma = 1ull << 10;

constexpr std::uint64_t kPtePresent = 1ull << 0;
constexpr std::uint64_t kPteWrite = 1ull << 1;
constexpr std::uint64_t kPteLarge = 1ull << 7;

// Packs a segment's attributes into an 8-byte GDT descriptor (Intel SDM 3.4.5).
std::uint64_t descriptor(SegmentState const& s)
{
    std::uint64_t d = 0;
    d |= s.limit & 0xffffull;
    d |= (s.base & 0xffffffull) << 16;
    d |= std::uint64_t(s.type & 0xf) << 40;
    d |= std::uint64_t(s.s & 1) << 44;
    d |= std::uint64_t(s.dpl & 3) << 45;
    d |= std::uint64_t(s.present & 1) << 47;
    d |= std::uint64_t((s.limit >> 16) & 0xf) << 48;
    d |= std::uint64_t(s.l & 1) << 53;
    d |= std::uint64_t(s.db & 1) << 54;
    d |= std::uint64_t(s.g & 1) << 55;
    d |= ((s.base >> 24) & 0xffull) << 56;
    return d;
}

kvm_segment to_kvm(SegmentState const& s)
{
    kvm_segment k {};
    k.base = s.base;
    // KVM takes the limit in bytes; a page-granular 0xfffff means 4 GiB - 1.
    k.limit = s.g ? (s.limit << 12) | 0xfff : s.limit;
    k.selector = s.selector;
    k.type = s.type;
    k.present = s.present;
    k.dpl = s.dpl;
    k.db = s.db;
    k.s = s.s;
    k.l = s.l;
    k.g = s.g;
    k.avl = 0;
    k.unusable = 0;
    return k;
}

} // namespace

Result<EntryState> prepare_entry(GuestMemory const& mem, EntryMode mode, std::uint64_t entry, std::uint64_t boot_info)
{
    EntryState st;
    st.mode = mode;
    st.rip = entry;
    st.rsp = kBootStackTop;
    bool long_mode = mode == EntryMode::Long64;
    // Execute/read code (type 0xb: accessed), read/write data (0x3: accessed) and a
    // busy 32-bit TSS (0xb, system), all flat.
    st.code = { kBootCs, 0, 0xfffff, 0xb, 1, 0, 1, static_cast<std::uint8_t>(long_mode ? 0 : 1),
        static_cast<std::uint8_t>(long_mode ? 1 : 0), 1 };
    st.data = { kBootDs, 0, 0xfffff, 0x3, 1, 0, 1, 1, 0, 1 };
    st.tss = { kBootTss, 0, 0x67, 0xb, 0, 0, 1, 0, 0, 0 };
    std::array<std::uint64_t, 5> gdt { 0, 0, descriptor(st.code), descriptor(st.data), descriptor(st.tss) };
    STRATA_TRY((mem.write(kBootGdt, gdt)));

    if (long_mode) {
        st.rsi = boot_info;
        // One PML4 entry -> one PDPT whose first four entries each point at a page
        // directory of 512 2-MiB pages: an identity map of [0, 4 GiB).
        STRATA_TRY((mem.write<std::uint64_t>(kBootPml4, kBootPdpt | kPtePresent | kPteWrite)));
        std::array<std::uint64_t, 512> pdpt {};
        for (std::uint64_t i = 0; i < 4; ++i)
            pdpt[i] = (kBootPd + i * 0x1000) | kPtePresent | kPteWrite;
        STRATA_TRY((mem.write(kBootPdpt, pdpt)));
        std::array<std::uint64_t, 512> pd {};
        for (std::uint64_t dir = 0; dir < 4; ++dir) {
            for (std::uint64_t i = 0; i < 512; ++i)
                pd[i] = ((dir * 512 + i) << 21) | kPtePresent | kPteWrite | kPteLarge;
            STRATA_TRY((mem.write(kBootPd + dir * 0x1000, pd)));
        }
        // The rest of the PML4 page must be zero.
        std::array<std::uint64_t, 511> rest {};
        STRATA_TRY((mem.write(kBootPml4 + 8, rest)));
        st.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
        st.cr3 = kBootPml4;
        st.cr4 = kCr4Pae;
        st.efer = kEferLme | kEferLma;
    } else {
        st.rbx = boot_info;
        st.cr0 = kCr0Pe | kCr0Et;
    }
    return st;
}

void apply_entry_state(EntryState const& st, kvm_regs& regs, kvm_sregs& sregs)
{
    regs = kvm_regs {};
    regs.rip = st.rip;
    regs.rsi = st.rsi;
    regs.rbx = st.rbx;
    regs.rsp = st.rsp;
    regs.rbp = st.rsp;
    regs.rflags = st.rflags;

    sregs.cs = to_kvm(st.code);
    kvm_segment data = to_kvm(st.data);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = to_kvm(st.tss);
    sregs.ldt = kvm_segment {};
    sregs.ldt.type = 2; // an LDT, not present: unusable
    sregs.ldt.unusable = 1;
    sregs.gdt.base = st.gdt_base;
    sregs.gdt.limit = st.gdt_limit;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = st.cr0;
    sregs.cr3 = st.cr3;
    sregs.cr4 = st.cr4;
    sregs.efer = st.efer;
}

} // namespace strata::linux_boot
