// The Linux loader against synthetic kernels: the setup header parser's checks,
// every boot_params field a loader writes (boot.rst "Details of header fields",
// zero-page.rst), e820, initrd placement, the 64-bit entry state and its page
// tables and GDT, entry selection between the 64-bit entry and PVH, and the
// decompressed-kernel cache.
#include "tests/vmm/linux_test_images.h"
#include "tests/vmm/linux_test_util.h"
#include "vmm/layout.h"
#include "vmm/boot/linux/bzimage.h"
#include "vmm/boot/linux/kernel_cache.h"
#include "vmm/boot/linux/linux_loader.h"
#include "vmm/boot/linux/pvh_boot.h"

#include <doctest/doctest.h>

using namespace strata;
using namespace strata::linux_boot;
using namespace strata::test;

namespace {

constexpr std::uint64_t kRam = 64ull << 20;

Bytes gzip(Bytes const& b) { return run_filter("gzip -n -1 -c", b); }

Bytes initrd_bytes(std::size_t n)
{
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i)
        b[i] = static_cast<std::byte>(i * 31 + 7);
    return b;
}

// Walks the guest's 4-level page tables for a virtual address; returns the
// physical address or ~0 when unmapped.
std::uint64_t translate(GuestMemory const& mem, std::uint64_t cr3, std::uint64_t va)
{
    std::uint64_t table = cr3 & ~0xfffull;
    for (int level = 3; level >= 0; --level) {
        std::uint64_t idx = (va >> (12 + 9 * level)) & 0x1ff;
        std::uint64_t e = mem.read<std::uint64_t>(table + idx * 8).value();
        if (!(e & 1))
            return ~0ull;
        if (level > 0 && (e & 0x80)) {
            std::uint64_t page = 1ull << (12 + 9 * level);
            return (e & ~(page - 1) & 0x000ffffffffff000ull) + (va & (page - 1));
        }
        table = e & 0x000ffffffffff000ull;
    }
    return table + (va & 0xfff);
}

} // namespace

TEST_CASE("parse_bzimage accepts a well-formed image and finds the payload")
{
    Bytes payload = initrd_bytes(1000);
    Bytes img = make_bzimage(payload);
    auto bz = parse_bzimage(img);
    REQUIRE(bz.has_value());
    CHECK(bz.value().hdr.version == 0x020f);
    CHECK(bz.value().setup.size() == 5 * 512);
    CHECK(bz.value().payload.size() == payload.size() + 4);
    CHECK(std::equal(payload.begin(), payload.end(), bz.value().payload.begin()));
    CHECK(bz.value().has_64bit_entry());
    CHECK(bz.value().relocatable());
    CHECK(bz.value().header_len == sizeof(SetupHeader));
}

TEST_CASE("parse_bzimage rejects malformed images with a reason")
{
    Bytes good = make_bzimage(initrd_bytes(1000));
    auto expect_bad = [](Bytes const& b, char const* needle) {
        auto r = parse_bzimage(b);
        REQUIRE(!r.has_value());
        CHECK(r.error().kind == ErrorKind::BadInput);
        CAPTURE(r.error().message);
        CHECK(r.error().message.find(needle) != std::string::npos);
    };
    SUBCASE("truncated inside the header") { expect_bad(Bytes(good.begin(), good.begin() + 0x100), "shorter"); }
    SUBCASE("truncated in the protected-mode code")
    {
        expect_bad(Bytes(good.begin(), good.end() - 64), "truncated");
    }
    SUBCASE("truncated in the setup code") { expect_bad(Bytes(good.begin(), good.begin() + 0x400), "setup code"); }
    SUBCASE("bad boot flag")
    {
        Bytes b = good;
        put<std::uint16_t>(b, 0x1fe, 0x1234);
        expect_bad(b, "0xAA55");
    }
    SUBCASE("bad magic")
    {
        Bytes b = good;
        put<std::uint32_t>(b, 0x202, 0x12345678);
        expect_bad(b, "HdrS");
    }
    SUBCASE("old protocol")
    {
        expect_bad(make_bzimage(initrd_bytes(100), BzSpec { .version = 0x0205 }), "older than 2.06");
    }
    SUBCASE("zImage")
    {
        Bytes b = good;
        b[0x211] = std::byte { 0 };
        expect_bad(b, "zImage");
    }
    SUBCASE("payload outside the image")
    {
        Bytes b = good;
        put<std::uint32_t>(b, 0x24c, 0x7fffffff);
        expect_bad(b, "payload");
    }
    SUBCASE("kernel_alignment not a power of two")
    {
        Bytes b = good;
        put<std::uint32_t>(b, 0x230, 0x300000);
        expect_bad(b, "power of two");
    }
}

TEST_CASE("build_e820 carves reservations out of RAM and merges neighbours")
{
    MemoryRange ram[] = { { 0, 3ull << 30 }, { 4ull << 30, 2ull << 30 } };
    E820Entry reserved[] = {
        { 0x9fc00, 0x100000 - 0x9fc00, 2 },
        { 0xe0000, 0x1000, 3 },                 // ACPI tables inside the reserved area
        { 0xfec00000, 0x1000, 2 },              // IOAPIC, outside RAM
    };
    auto e = build_e820(ram, reserved).value();
    REQUIRE(e.size() == 7);
    CHECK((e[0].addr == 0 && e[0].size == 0x9fc00 && e[0].type == 1));
    CHECK((e[1].addr == 0x9fc00 && e[1].size == 0xe0000 - 0x9fc00 && e[1].type == 2));
    CHECK((e[2].addr == 0xe0000 && e[2].size == 0x1000 && e[2].type == 3));
    CHECK((e[3].addr == 0xe1000 && e[3].size == 0x100000 - 0xe1000 && e[3].type == 2));
    CHECK((e[4].addr == 0x100000 && e[4].addr + e[4].size == 3ull << 30 && e[4].type == 1));
    CHECK((e[5].addr == 0xfec00000 && e[5].type == 2));
    CHECK((e[6].addr == 4ull << 30 && e[6].size == 2ull << 30 && e[6].type == 1));

    std::vector<E820Entry> many;
    for (std::uint64_t i = 0; i < 200; ++i)
        many.push_back({ 0x100000 + i * 0x2000, 0x1000, 2 });
    MemoryRange one[] = { { 0, 1ull << 30 } };
    CHECK(!build_e820(one, many).has_value());
}

TEST_CASE("a bzImage loads through its decompressed vmlinux with every boot_params field per boot.rst")
{
    TestRam ram(kRam, 0xcc);
    Bytes vmlinux = make_elf_kernel({ .pvh_entry = 0x1000100 });
    Bytes gz = gzip(vmlinux);
    REQUIRE(!gz.empty());
    Bytes img = make_bzimage(gz, {}, static_cast<std::uint32_t>(vmlinux.size()));
    Bytes initrd = initrd_bytes(300000);
    LinuxLoadOptions opt;
    opt.cmdline = "console=ttyS0 reboot=k panic=-1 initrd_size=300000";
    opt.initrd = std::span<std::byte const>(initrd);
    opt.rsdp_addr = 0xe0000;
    opt.reserved.push_back({ 0xe0000, 0x2000, 3 });
    auto r = load_linux(ram.mem(), img, opt);
    STRATA_REQUIRE_OK(r);
    auto const& s = r.value();
    CHECK(s.format == KernelFormat::BzImage);
    CHECK(s.compression == Compression::Gzip);
    CHECK(s.entry.mode == EntryMode::Long64);
    CHECK(s.entry_point == 0x1000000);
    CHECK(s.kernel_start == 0x1000000);
    CHECK(s.kernel_end == 0x1000000 + 0x800000); // init_size dominates the ELF's 20 KiB

    auto bp = ram.mem().read<BootParams>(layout::zero_page).value();
    auto hdr = parse_bzimage(img).value().hdr;
    // Fields copied from the image, unchanged.
    CHECK(bp.hdr.setup_sects == hdr.setup_sects);
    CHECK(bp.hdr.boot_flag == 0xAA55);
    CHECK(bp.hdr.header == kHdrS);
    CHECK(bp.hdr.version == hdr.version);
    CHECK(bp.hdr.kernel_alignment == hdr.kernel_alignment);
    CHECK(bp.hdr.relocatable_kernel == 1);
    CHECK(bp.hdr.xloadflags == hdr.xloadflags);
    CHECK(bp.hdr.init_size == hdr.init_size);
    CHECK(bp.hdr.pref_address == hdr.pref_address);
    CHECK(bp.hdr.payload_offset == hdr.payload_offset);
    CHECK(bp.hdr.initrd_addr_max == hdr.initrd_addr_max);
    CHECK(bp.hdr.cmdline_size == hdr.cmdline_size);
    CHECK(bp.hdr.code32_start == hdr.code32_start);
    // Fields a boot loader writes.
    CHECK(bp.hdr.type_of_loader == 0xff);
    CHECK((bp.hdr.loadflags & kLoadedHigh));
    CHECK((bp.hdr.loadflags & kCanUseHeap));
    CHECK(!(bp.hdr.loadflags & kKaslrFlag));
    CHECK(bp.hdr.heap_end_ptr == 0xfe00);
    CHECK(bp.hdr.vid_mode == 0xffff);
    CHECK(bp.hdr.hardware_subarch == 0);
    CHECK(bp.hdr.hardware_subarch_data == 0);
    CHECK(bp.hdr.setup_data == 0);
    CHECK(bp.hdr.cmd_line_ptr == layout::cmdline);
    CHECK(bp.ext_cmd_line_ptr == 0);
    CHECK(bp.acpi_rsdp_addr == 0xe0000);
    CHECK(bp.sentinel == 0);
    // The command line, NUL-terminated, at cmd_line_ptr.
    Bytes cl(opt.cmdline.size() + 1);
    REQUIRE(ram.mem().read_bytes(bp.hdr.cmd_line_ptr, cl).has_value());
    CHECK(std::string(reinterpret_cast<char const*>(cl.data())) == opt.cmdline); // SAFETY: NUL-terminated bytes
    // The initrd: page aligned, below initrd_addr_max, clear of the kernel's
    // init_size, as high as fits in RAM, with its bytes intact.
    std::uint64_t ird = bp.hdr.ramdisk_image | std::uint64_t(bp.ext_ramdisk_image) << 32;
    std::uint64_t ird_size = bp.hdr.ramdisk_size | std::uint64_t(bp.ext_ramdisk_size) << 32;
    CHECK(ird == s.initrd_addr);
    CHECK(ird_size == initrd.size());
    CHECK(ird % 4096 == 0);
    CHECK(ird + ird_size - 1 <= hdr.initrd_addr_max);
    CHECK((ird >= s.kernel_end || ird + ird_size <= s.kernel_start));
    CHECK(ird + ird_size <= kRam);
    CHECK(kRam - (ird + ird_size) < 4096);
    Bytes got(initrd.size());
    REQUIRE(ram.mem().read_bytes(ird, got).has_value());
    CHECK(got == initrd);
    // e820: low RAM, the reserved EBDA/BIOS area with the ACPI range, RAM above 1 MiB.
    REQUIRE(bp.e820_entries == 5);
    CHECK((bp.e820_table[0].addr == 0 && bp.e820_table[0].size == 0x9fc00 && bp.e820_table[0].type == 1));
    CHECK((bp.e820_table[1].addr == 0x9fc00 && bp.e820_table[1].type == 2));
    CHECK((bp.e820_table[2].addr == 0xe0000 && bp.e820_table[2].size == 0x2000 && bp.e820_table[2].type == 3));
    CHECK((bp.e820_table[3].addr == 0xe2000 && bp.e820_table[3].addr + bp.e820_table[3].size == 0x100000));
    CHECK((bp.e820_table[4].addr == 0x100000 && bp.e820_table[4].size == kRam - 0x100000 && bp.e820_table[4].type == 1));
    // The kernel's segment at p_paddr, its bss zeroed over the 0xcc fill.
    auto elf_code = std::span<std::byte const>(vmlinux).subspan(0x1000, 0x2000);
    Bytes loaded(0x2000);
    REQUIRE(ram.mem().read_bytes(0x1000000, loaded).has_value());
    CHECK(std::equal(loaded.begin(), loaded.end(), elf_code.begin()));
    Bytes bss(0x3000);
    REQUIRE(ram.mem().read_bytes(0x1002000, bss).has_value());
    CHECK(std::all_of(bss.begin(), bss.end(), [](std::byte b) { return b == std::byte { 0 }; }));
}

TEST_CASE("the 64-bit entry state: long mode, identity map, boot GDT, rsi = zero page")
{
    TestRam ram(kRam);
    Bytes initrd = initrd_bytes(4096 * 3 + 5);
    LinuxLoadOptions opt;
    opt.cmdline = "x";
    opt.initrd = std::span<std::byte const>(initrd);
    auto s = load_linux(ram.mem(), make_elf_kernel({}), opt).value();
    auto const& e = s.entry;
    CHECK(e.mode == EntryMode::Long64);
    CHECK(e.rip == 0x1000000);
    CHECK(e.rsi == layout::zero_page);
    CHECK(!(e.rflags & 0x200)); // interrupts off
    CHECK((e.cr0 & 0x80000001) == 0x80000001);
    CHECK((e.cr4 & 0x20));
    CHECK((e.efer & 0x500) == 0x500);
    // Identity map over everything the kernel is handed, and the top of 4 GiB.
    for (std::uint64_t va : { std::uint64_t(0), std::uint64_t(layout::zero_page), std::uint64_t(layout::cmdline),
             s.kernel_start, s.kernel_end - 1, s.initrd_addr, s.initrd_addr + s.initrd_size - 1,
             std::uint64_t(0xfffff000) }) {
        CAPTURE(va);
        CHECK(translate(ram.mem(), e.cr3, va) == va);
    }
    CHECK(translate(ram.mem(), e.cr3, 4ull << 30) == ~0ull);
    // boot.rst: __BOOT_CS 0x10 execute/read 64-bit, __BOOT_DS 0x18 read/write.
    CHECK(e.code.selector == 0x10);
    CHECK(e.data.selector == 0x18);
    auto gdt_cs = ram.mem().read<std::uint64_t>(e.gdt_base + 0x10).value();
    auto gdt_ds = ram.mem().read<std::uint64_t>(e.gdt_base + 0x18).value();
    CHECK(gdt_cs == 0x00af9b000000ffffull);
    CHECK(gdt_ds == 0x00cf93000000ffffull);

    kvm_regs regs {};
    kvm_sregs sregs {};
    sregs.apic_base = 0xfee00900;
    apply_entry_state(e, regs, sregs);
    CHECK(regs.rip == 0x1000000);
    CHECK(regs.rsi == layout::zero_page);
    CHECK(regs.rflags == 2);
    CHECK(sregs.cs.selector == 0x10);
    CHECK(sregs.cs.l == 1);
    CHECK(sregs.cs.db == 0);
    CHECK(sregs.cs.limit == 0xffffffff);
    CHECK(sregs.ds.selector == 0x18);
    CHECK(sregs.ss.selector == 0x18);
    CHECK(sregs.es.selector == 0x18);
    CHECK(sregs.tr.type == 11);
    CHECK(sregs.cr3 == e.cr3);
    CHECK(sregs.efer == e.efer);
    CHECK(sregs.apic_base == 0xfee00900); // untouched
}

TEST_CASE("an ELF vmlinux gets a made-up setup header, and PVH is used only when asked or when it is the only entry")
{
    TestRam ram(kRam);
    LinuxLoadOptions opt;
    opt.cmdline = "console=ttyS0";
    Bytes both = make_elf_kernel({ .pvh_entry = 0x1000400 });

    auto s = load_linux(ram.mem(), both, opt).value();
    CHECK(s.format == KernelFormat::Elf);
    CHECK(s.entry.mode == EntryMode::Long64);
    auto bp = ram.mem().read<BootParams>(layout::zero_page).value();
    CHECK(bp.hdr.boot_flag == 0xAA55);
    CHECK(bp.hdr.header == kHdrS);
    CHECK(bp.hdr.version >= 0x0206);
    CHECK(bp.hdr.type_of_loader == 0xff);
    CHECK(bp.hdr.cmd_line_ptr == layout::cmdline);
    CHECK(bp.e820_entries == 3);

    opt.protocol = BootProtocol::Pvh;
    Bytes initrd = initrd_bytes(8192);
    opt.initrd = std::span<std::byte const>(initrd);
    opt.rsdp_addr = 0xe0000;
    auto p = load_linux(ram.mem(), both, opt).value();
    CHECK(p.entry.mode == EntryMode::Protected32);
    CHECK(p.entry.rip == 0x1000400);
    CHECK(p.entry.rbx == layout::pvh_start_info);
    CHECK(p.entry.cr0 == 0x11);
    CHECK(p.entry.efer == 0);
    auto si = ram.mem().read<PvhStartInfo>(layout::pvh_start_info).value();
    CHECK(si.magic == kPvhMagic);
    CHECK(si.version == 1);
    CHECK(si.cmdline_paddr == layout::cmdline);
    CHECK(si.rsdp_paddr == 0xe0000);
    CHECK(si.nr_modules == 1);
    auto mod = ram.mem().read<PvhModule>(si.modlist_paddr).value();
    CHECK(mod.paddr == p.initrd_addr);
    CHECK(mod.size == 8192);
    CHECK(si.memmap_entries == 3);
    auto mm = ram.mem().read<PvhMemmapEntry>(si.memmap_paddr + 2 * sizeof(PvhMemmapEntry)).value();
    CHECK((mm.addr == 0x100000 && mm.type == 1));
    kvm_regs regs {};
    kvm_sregs sregs {};
    apply_entry_state(p.entry, regs, sregs);
    CHECK(sregs.cs.db == 1);
    CHECK(sregs.cs.l == 0);
    CHECK(regs.rbx == layout::pvh_start_info);

    // Only a PVH note and no "Linux" note: a PVH kernel, entered by PVH on Auto.
    opt.protocol = BootProtocol::Auto;
    auto pvh_only = load_linux(ram.mem(), make_elf_kernel({ .linux_note = false, .pvh_entry = 0x1000800 }), opt).value();
    CHECK(pvh_only.entry.mode == EntryMode::Protected32);
    CHECK(pvh_only.entry.rip == 0x1000800);

    // PVH asked for a kernel without the note.
    opt.protocol = BootProtocol::Pvh;
    auto none = load_linux(ram.mem(), make_elf_kernel({}), opt);
    REQUIRE(!none.has_value());
    CHECK(none.error().message.find("PVH") != std::string::npos);
}

TEST_CASE("initrd placement above 4 GiB fills the ext_ fields")
{
    E820Entry e820[] = { { 0, 0x9fc00, 1 } };
    ZeroPageInputs in;
    in.cmdline_addr = 0x1'0000'3000;
    in.initrd_addr = 0x1'2345'6000;
    in.initrd_size = 0x1'0000'1000;
    in.e820 = e820;
    auto bp = build_zero_page(in).value();
    CHECK(bp.hdr.ramdisk_image == 0x23456000);
    CHECK(bp.ext_ramdisk_image == 1);
    CHECK(bp.hdr.ramdisk_size == 0x1000);
    CHECK(bp.ext_ramdisk_size == 1);
    CHECK(bp.hdr.cmd_line_ptr == 0x3000);
    CHECK(bp.ext_cmd_line_ptr == 1);
    CHECK(bp.e820_entries == 1);
}

TEST_CASE("place_initrd stays below the limit and clear of the kernel")
{
    E820Entry e820[] = { { 0, 0x9fc00, 1 }, { 0x9fc00, 0x60400, 2 }, { 0x100000, 0x7f00000, 1 } };
    // Highest fit in RAM.
    CHECK(place_initrd(e820, 0x10000, 1ull << 32, 0x1000000, 0x2000000).value() == 0x8000000 - 0x10000);
    // A limit below the end of RAM.
    CHECK(place_initrd(e820, 0x10000, 0x3000000, 0x1000000, 0x2000000).value() == 0x3000000 - 0x10000);
    // The limit falls inside the kernel: go below the kernel.
    CHECK(place_initrd(e820, 0x10000, 0x1800000, 0x1000000, 0x2000000).value() == 0x1000000 - 0x10000);
    // Too large.
    CHECK(!place_initrd(e820, 0x8000000, 1ull << 32, 0x1000000, 0x2000000).has_value());
}

TEST_CASE("kernels, command lines and initrds that do not fit are refused")
{
    TestRam ram(kRam);
    LinuxLoadOptions opt;
    SUBCASE("kernel below 1 MiB")
    {
        auto r = load_linux(ram.mem(), make_elf_kernel({ .paddr = 0x10000, .entry = 0x10000 }), opt);
        REQUIRE(!r.has_value());
        CHECK(r.error().message.find("1 MiB") != std::string::npos);
    }
    SUBCASE("kernel past the end of RAM")
    {
        auto r = load_linux(ram.mem(), make_elf_kernel({ .paddr = 0x8000000, .entry = 0x8000000 }), opt);
        REQUIRE(!r.has_value());
        CHECK(r.error().kind == ErrorKind::Usage);
    }
    SUBCASE("command line longer than the kernel's cmdline_size")
    {
        opt.cmdline.assign(3000, 'a');
        Bytes img = make_bzimage(gzip(make_elf_kernel({})));
        auto r = load_linux(ram.mem(), img, opt);
        REQUIRE(!r.has_value());
        CHECK(r.error().message.find("command line") != std::string::npos);
    }
    SUBCASE("initrd larger than RAM")
    {
        Bytes big(kRam, std::byte { 1 });
        opt.initrd = std::span<std::byte const>(big);
        auto r = load_linux(ram.mem(), make_elf_kernel({}), opt);
        REQUIRE(!r.has_value());
        CHECK(r.error().message.find("initrd") != std::string::npos);
    }
    SUBCASE("neither bzImage nor ELF")
    {
        Bytes junk(4096, std::byte { 0x55 });
        CHECK(!load_linux(ram.mem(), junk, opt).has_value());
    }
    SUBCASE("a payload that does not decompress to an ELF")
    {
        Bytes img = make_bzimage(gzip(initrd_bytes(10000)));
        auto r = load_linux(ram.mem(), img, opt);
        REQUIRE(!r.has_value());
        CHECK(r.error().message.find("gzip payload") != std::string::npos);
    }
}

TEST_CASE("in-guest decompression: the protected-mode code at pref_address, entered at +0x200")
{
    TestRam ram(kRam);
    Bytes img = make_bzimage(gzip(make_elf_kernel({})));
    LinuxLoadOptions opt;
    opt.decompress_on_host = false;
    auto s = load_linux(ram.mem(), img, opt).value();
    CHECK(s.entry.mode == EntryMode::Long64);
    CHECK(s.entry_point == 0x1000000 + 0x200);
    auto bz = parse_bzimage(img).value();
    Bytes got(bz.protected_mode.size());
    REQUIRE(ram.mem().read_bytes(0x1000000, got).has_value());
    CHECK(std::equal(got.begin(), got.end(), bz.protected_mode.begin()));

    // An unknown payload format falls back to this path when XLF_KERNEL_64 allows.
    Bytes odd = make_bzimage(initrd_bytes(5000));
    opt.decompress_on_host = true;
    CHECK(load_linux(ram.mem(), odd, opt).value().entry_point == 0x1000200);
    Bytes odd32 = make_bzimage(initrd_bytes(5000), BzSpec { .xloadflags = 0 });
    CHECK(!load_linux(ram.mem(), odd32, opt).has_value());
}

TEST_CASE("load_linux_files reads an ELF kernel's segments and the initrd straight into guest RAM, as load_linux places them")
{
    auto dir = make_temp_dir("kfiles");
    Bytes vmlinux = make_elf_kernel({ .pvh_entry = 0x1000400 });
    Bytes initrd = initrd_bytes(3 * 4096 + 123);
    write_file(dir / "vmlinux", vmlinux);
    write_file(dir / "initrd", initrd);
    LinuxLoadOptions opt;
    opt.cmdline = "console=ttyS0";

    // Guest RAM that is not zero: the bss must be zero-filled, and the file's
    // bytes land exactly where the in-memory loader puts them.
    TestRam from_files(kRam, 0xa5);
    auto f = load_linux_files(from_files.mem(), dir / "vmlinux", dir / "initrd", opt).value();
    TestRam from_bytes(kRam, 0xa5);
    LinuxLoadOptions mem_opt = opt;
    mem_opt.initrd = std::span<std::byte const>(initrd);
    auto b = load_linux(from_bytes.mem(), vmlinux, mem_opt).value();
    CHECK(f.entry_point == b.entry_point);
    CHECK(f.initrd_addr == b.initrd_addr);
    CHECK(f.initrd_size == initrd.size());
    CHECK(std::memcmp(from_files.host(), from_bytes.host(), kRam) == 0);
    CHECK(std::memcmp(from_files.host() + 0x1000000, vmlinux.data() + 0x1000, 0x2000) == 0);
    for (std::uint64_t i = 0; i < 0x3000; ++i)
        REQUIRE(from_files.host()[0x1002000 + i] == std::byte { 0 });
    CHECK(std::memcmp(from_files.host() + f.initrd_addr, initrd.data(), initrd.size()) == 0);

    // memory_is_zero: RAM fresh from mmap is zero, so the bss is left untouched
    // (here the 0xa5 shows it was not written).
    TestRam dirty(kRam, 0xa5);
    opt.memory_is_zero = true;
    (void)load_linux_files(dirty.mem(), dir / "vmlinux", std::nullopt, opt).value();
    CHECK(dirty.host()[0x1002000] == std::byte { 0xa5 });
    CHECK(std::memcmp(dirty.host() + 0x1000000, vmlinux.data() + 0x1000, 0x2000) == 0);

    // Files that are not usable are named in the error.
    auto missing = load_linux_files(dirty.mem(), dir / "none", std::nullopt, opt);
    REQUIRE(!missing);
    CHECK(missing.error().message.find("none") != std::string::npos);
    auto no_initrd = load_linux_files(dirty.mem(), dir / "vmlinux", dir / "nothing", opt);
    REQUIRE(!no_initrd);
    CHECK(no_initrd.error().message.find("initrd") != std::string::npos);
    auto dir_initrd = load_linux_files(dirty.mem(), dir / "vmlinux", dir, opt);
    REQUIRE(!dir_initrd);
    CHECK(dir_initrd.error().message.find("is a directory") != std::string::npos);
    Bytes truncated(vmlinux.begin(), vmlinux.begin() + 0x1800);
    write_file(dir / "short", truncated);
    auto cut = load_linux_files(dirty.mem(), dir / "short", std::nullopt, opt);
    REQUIRE(!cut);
    CHECK(cut.error().message.find("past the end of the file") != std::string::npos);
    std::filesystem::remove_all(dir);
}

TEST_CASE("the decompressed-kernel cache is keyed by the bzImage's SHA-256 and survives a bad entry")
{
    auto dir = make_temp_dir("kcache");
    TestRam ram(kRam);
    Bytes vmlinux = make_elf_kernel({});
    Bytes img = make_bzimage(gzip(vmlinux));
    LinuxLoadOptions opt;
    opt.cache_dir = dir;
    auto first = load_linux(ram.mem(), img, opt).value();
    CHECK(!first.cache_hit);
    auto entry = dir / (sha256_hex(img) + ".vmlinux");
    REQUIRE(std::filesystem::exists(entry));
    CHECK(read_file(entry) == vmlinux);
    auto second = load_linux(ram.mem(), img, opt).value();
    CHECK(second.cache_hit);
    CHECK(second.entry_point == first.entry_point);
    // A hit reads the segments from the cache entry into guest RAM.
    TestRam from_cache(kRam, 0x5a);
    (void)load_linux(from_cache.mem(), img, opt).value();
    CHECK(std::memcmp(from_cache.host() + 0x1000000, vmlinux.data() + 0x1000, 0x2000) == 0);
    CHECK(from_cache.host()[0x1002000] == std::byte { 0 });

    // defer_cache_write: nothing is written; the setup hands the kernel over.
    std::filesystem::remove(entry);
    opt.defer_cache_write = true;
    auto deferred = load_linux(ram.mem(), img, opt).value();
    CHECK(!deferred.cache_hit);
    CHECK(!std::filesystem::exists(entry));
    REQUIRE(deferred.cache_entry);
    CHECK(*deferred.cache_entry == entry);
    CHECK(deferred.decompressed == vmlinux);
    REQUIRE(store_in_cache(entry, deferred.decompressed));
    CHECK(load_linux(ram.mem(), img, opt).value().cache_hit);
    opt.defer_cache_write = false;

    write_file(entry, Bytes(100, std::byte { 0x11 }));
    auto third = load_linux(ram.mem(), img, opt).value();
    CHECK(!third.cache_hit);
    CHECK(!third.cache_note.empty());
    CHECK(read_file(entry) == vmlinux);
    std::filesystem::remove_all(dir);

    CHECK(sha256_hex({}) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("lz4 and lzo payloads are decompressed every time, never hashed into the cache")
{
    auto dir = make_temp_dir("kcache-fast");
    TestRam ram(kRam);
    Bytes vmlinux = make_elf_kernel({});
    LinuxLoadOptions opt;
    opt.cache_dir = dir;
    for (char const* tool : { "lz4 -l -1 -c", "busybox lzop -c" }) {
        CAPTURE(tool);
        Bytes img = make_bzimage(run_filter(tool, vmlinux));
        auto first = load_linux(ram.mem(), img, opt).value();
        auto second = load_linux(ram.mem(), img, opt).value();
        CHECK(!first.cache_hit);
        CHECK(!second.cache_hit);
        CHECK(second.entry_point == first.entry_point);
        CHECK(std::filesystem::is_empty(dir));
        CHECK(std::memcmp(ram.host() + 0x1000000, vmlinux.data() + 0x1000, 0x2000) == 0);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("default cache directory follows STRATA_HOME, then HOME")
{
    ::setenv("STRATA_HOME", "/tmp/sh", 1);
    CHECK(default_kernel_cache_dir().value() == "/tmp/sh/cache/kernels");
    ::unsetenv("STRATA_HOME");
    ::unsetenv("XDG_CACHE_HOME");
    ::setenv("HOME", "/tmp/hh", 1);
    CHECK(default_kernel_cache_dir().value() == "/tmp/hh/.cache/strata/kernels");
}

TEST_CASE("boot protocol names")
{
    CHECK(parse_boot_protocol("pvh").value() == BootProtocol::Pvh);
    CHECK(parse_boot_protocol("linux").value() == BootProtocol::Linux64);
    CHECK(parse_boot_protocol("auto").value() == BootProtocol::Auto);
    CHECK(!parse_boot_protocol("multiboot").has_value());
}
