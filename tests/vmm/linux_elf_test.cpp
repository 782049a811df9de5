// ELF kernels: entry translation (physical e_entry as Linux links it, or a virtual
// one mapped through its segment), the PVH note with 4- and 8-byte descriptors,
// and malformed files.
#include "tests/vmm/linux_test_images.h"
#include "tests/vmm/linux_test_util.h"
#include "vmm/boot/linux/elf_kernel.h"

#include <doctest/doctest.h>

using namespace strata;
using namespace strata::linux_boot;
using namespace strata::test;

TEST_CASE("e_entry: physical as Linux links it, or virtual translated through its segment")
{
    auto phys = parse_elf_kernel(make_elf_kernel({ .entry = 0x1000040 })).value();
    CHECK(phys.entry_paddr.value() == 0x1000040);
    CHECK(phys.has_linux_note);
    CHECK(phys.lowest == 0x1000000);
    CHECK(phys.highest == 0x1000000 + 0x5000);
    auto virt = parse_elf_kernel(make_elf_kernel({ .entry = 0xffffffff81000080 })).value();
    CHECK(virt.entry_paddr.value() == 0x1000080);
    auto outside = parse_elf_kernel(make_elf_kernel({ .entry = 0x5000000 })).value();
    CHECK(!outside.entry_paddr.has_value());
}

TEST_CASE("the PVH note is found with an 8-byte descriptor (Linux) and a 4-byte one")
{
    auto k = parse_elf_kernel(make_elf_kernel({ .pvh_entry = 0x1234567 })).value();
    CHECK(k.pvh_entry.value() == 0x1234567);
    // Rewrite the note's descsz to 4: the low half of the same address.
    Bytes b = make_elf_kernel({ .linux_note = false, .pvh_entry = 0x1234567 });
    put<std::uint32_t>(b, 0x100 + 4, 4);
    CHECK(parse_elf_kernel(b).value().pvh_entry.value() == 0x1234567);
    CHECK(!parse_elf_kernel(make_elf_kernel({})).value().pvh_entry.has_value());
}

TEST_CASE("malformed ELF kernels are rejected")
{
    Bytes good = make_elf_kernel({});
    auto expect_bad = [](Bytes const& b) {
        auto r = parse_elf_kernel(b);
        CHECK(!r.has_value());
        if (!r)
            CHECK(r.error().kind == ErrorKind::BadInput);
    };
    SUBCASE("truncated header") { expect_bad(Bytes(good.begin(), good.begin() + 20)); }
    SUBCASE("truncated segment") { expect_bad(Bytes(good.begin(), good.end() - 1)); }
    SUBCASE("wrong machine")
    {
        Bytes b = good;
        put<std::uint16_t>(b, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
        expect_bad(b);
    }
    SUBCASE("big-endian")
    {
        Bytes b = good;
        b[EI_DATA] = std::byte { ELFDATA2MSB };
        expect_bad(b);
    }
    SUBCASE("program headers past the end")
    {
        Bytes b = good;
        put<std::uint64_t>(b, offsetof(Elf64_Ehdr, e_phoff), 0xffffffffffff0000ull);
        expect_bad(b);
    }
    SUBCASE("file size larger than memory size")
    {
        Bytes b = good;
        put<std::uint64_t>(b, sizeof(Elf64_Ehdr) + offsetof(Elf64_Phdr, p_memsz), 0x10);
        expect_bad(b);
    }
    SUBCASE("segment wrapping the address space")
    {
        Bytes b = good;
        put<std::uint64_t>(b, sizeof(Elf64_Ehdr) + offsetof(Elf64_Phdr, p_paddr), 0xfffffffffffff000ull);
        expect_bad(b);
    }
    SUBCASE("a note running past its segment is ignored, not read")
    {
        Bytes b = make_elf_kernel({ .pvh_entry = 0x1000000 });
        put<std::uint32_t>(b, 0x100 + 4, 0x7fffffff); // the Linux note's descsz
        auto r = parse_elf_kernel(b);
        REQUIRE(r.has_value());
        CHECK(!r.value().pvh_entry.has_value());
    }
}
