// Debian's cloud kernel as a real input to the bzImage parser, the host-side
// decompressor and the loader. The kernel package comes from apt-get download
// (tests/vmm/fetch-debian-kernel) into the build directory; offline, each test
// case says so and is skipped.
#include "tests/vmm/linux_test_util.h"
#include "vmm/layout.h"
#include "vmm/boot/linux/bzimage.h"
#include "vmm/boot/linux/elf_kernel.h"
#include "vmm/boot/linux/kernel_cache.h"
#include "vmm/boot/linux/linux_loader.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

using namespace strata;
using namespace strata::linux_boot;
using namespace strata::test;
using Bytes = std::vector<std::byte>;

namespace {

std::filesystem::path debian_kernel()
{
    std::string cmd = std::string(STRATA_SOURCE_DIR) + "/tests/vmm/fetch-debian-kernel " + STRATA_BUILD_DIR + "/linux-cache";
    FILE* p = ::popen(cmd.c_str(), "r");
    char line[4096] = {};
    bool got = p && std::fgets(line, sizeof line, p);
    int rc = p ? ::pclose(p) : -1;
    if (!got || rc != 0) {
        std::cout << "SKIP: Debian's cloud kernel could not be fetched with apt-get (offline?)\n";
        std::exit(STRATA_SKIP_CODE);
    }
    std::string path(line);
    while (!path.empty() && (path.back() == '\n' || path.back() == '\r'))
        path.pop_back();
    return path;
}

} // namespace

TEST_CASE("Debian's cloud bzImage: setup header, payload and decompressed vmlinux")
{
    auto file = read_file(debian_kernel());
    auto bz = parse_bzimage(file);
    STRATA_REQUIRE_OK(bz);
    auto const& h = bz.value().hdr;
    MESSAGE((std::string("protocol ") + std::to_string(h.version >> 8) + "." + std::to_string(h.version & 0xff)
        + ", init_size " + std::to_string(h.init_size) + ", payload "
        + compression_name(detect_compression(bz.value().payload))));
    CHECK(h.version >= 0x020f);
    CHECK(bz.value().has_64bit_entry());
    CHECK(bz.value().relocatable());
    CHECK(h.kernel_alignment == 0x200000);
    CHECK(h.pref_address == 0x1000000);
    CHECK(h.cmdline_size >= 2047);
    CHECK(h.init_size > 0);
    CHECK(detect_compression(bz.value().payload) != Compression::Unknown);

    auto vmlinux = decompress(bz.value().payload);
    STRATA_REQUIRE_OK(vmlinux);
    // The kernel build appends the decompressed size to the payload (size_append).
    auto const& pl = bz.value().payload;
    std::uint32_t trailer;
    std::memcpy(&trailer, pl.data() + pl.size() - 4, 4);
    CHECK(trailer == vmlinux.value().size());

    auto elf = parse_elf_kernel(vmlinux.value());
    STRATA_REQUIRE_OK(elf);
    CHECK(elf.value().is_64bit);
    CHECK(elf.value().has_linux_note);
    CHECK(elf.value().entry_paddr.value() == 0x1000000);
    CHECK(elf.value().lowest == 0x1000000);
    CHECK(elf.value().pvh_entry.has_value());
    // init_size must cover the decompressed kernel's memory image.
    CHECK(elf.value().highest - elf.value().lowest <= h.init_size);
}

TEST_CASE("Debian's cloud bzImage loads for the 64-bit entry with a correct zero page, cached unless lz4 or lzo")
{
    auto file = read_file(debian_kernel());
    auto cache = make_temp_dir("debcache");
    TestRam ram(512ull << 20);
    Bytes initrd(3 << 20, std::byte { 0x5a });
    LinuxLoadOptions opt;
    opt.cmdline = "console=ttyS0 reboot=k panic=-1 noxsave";
    opt.initrd = std::span<std::byte const>(initrd);
    opt.cache_dir = cache;
    auto s = load_linux(ram.mem(), file, opt);
    STRATA_REQUIRE_OK(s);
    CHECK(!s.value().cache_hit);
    CHECK(s.value().entry.mode == EntryMode::Long64);
    CHECK(s.value().entry_point == 0x1000000);
    auto hdr = parse_bzimage(file).value().hdr;
    CHECK(s.value().kernel_end == 0x1000000 + hdr.init_size);

    auto bp = ram.mem().read<BootParams>(layout::zero_page).value();
    CHECK(std::memcmp(&bp.hdr.header, &hdr.header, 4) == 0);
    CHECK(bp.hdr.version == hdr.version);
    CHECK(bp.hdr.init_size == hdr.init_size);
    CHECK(bp.hdr.type_of_loader == 0xff);
    CHECK((bp.hdr.loadflags & (kLoadedHigh | kCanUseHeap)) == (kLoadedHigh | kCanUseHeap));
    CHECK(bp.hdr.cmd_line_ptr == layout::cmdline);
    std::uint64_t ird = bp.hdr.ramdisk_image;
    CHECK(bp.hdr.ramdisk_size == initrd.size());
    CHECK(ird % 4096 == 0);
    CHECK(ird + initrd.size() - 1 <= hdr.initrd_addr_max);
    CHECK(ird >= s.value().kernel_end);
    CHECK(bp.e820_entries == 3);

    // The kernel's first bytes at 1 MiB-aligned LOAD_PHYSICAL_ADDR are startup_64's.
    auto vmlinux = decompress(parse_bzimage(file).value().payload).value();
    auto elf = parse_elf_kernel(vmlinux).value();
    auto const& seg = elf.segments.front();
    Bytes got(4096);
    REQUIRE(ram.mem().read_bytes(seg.paddr, got).has_value());
    CHECK(std::equal(got.begin(), got.end(), vmlinux.begin() + static_cast<std::ptrdiff_t>(seg.file_offset)));

    // An lz4 payload (Debian's cloud kernel) inflates as fast as a cache entry is
    // read: it is not hashed or cached. The other formats are (linux_loader_test).
    auto again = load_linux(ram.mem(), file, opt);
    REQUIRE(again.has_value());
    if (s.value().compression == Compression::Lz4 || s.value().compression == Compression::Lzo) {
        CHECK(!again.value().cache_hit);
        CHECK(std::filesystem::is_empty(cache));
    } else {
        CHECK(again.value().cache_hit);
    }
    std::filesystem::remove_all(cache);
}

TEST_CASE("Debian's kernel decompressed vmlinux offers both entries, and PVH is used when asked")
{
    auto file = read_file(debian_kernel());
    TestRam ram(512ull << 20);
    LinuxLoadOptions opt;
    opt.cmdline = "console=ttyS0";
    opt.protocol = BootProtocol::Pvh;
    auto s = load_linux(ram.mem(), file, opt);
    STRATA_REQUIRE_OK(s);
    CHECK(s.value().entry.mode == EntryMode::Protected32);
    CHECK(s.value().entry_point > 0x1000000);
    CHECK(s.value().entry_point < s.value().kernel_end);
}
