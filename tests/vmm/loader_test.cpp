// The ELF/PVH loader and the boot information it writes, over plain buffers:
// well-formed images load; malformed ones (not ELF, truncated, overlapping,
// wrapping, outside memory) are refused with a message and nothing else happens.
#include "vmm/layout.h"
#include "vmm/boot/loader/elf.h"
#include "vmm/boot/loader/memory_map.h"
#include "vmm/boot/loader/pvh.h"

#include <doctest/doctest.h>

#include <cstring>
#include <elf.h>
#include <string>
#include <vector>

using namespace strata;

namespace {

// A minimal ELF64 executable: one PT_LOAD of `payload` at paddr, one PT_NOTE
// holding the Xen PVH entry note.
std::vector<std::byte> make_elf(std::uint64_t paddr, std::vector<std::byte> payload, std::uint64_t memsz, bool with_note = true)
{
    std::vector<std::byte> file(0x200);
    Elf64_Ehdr eh {};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = paddr;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = with_note ? 2 : 1;
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    std::memcpy(file.data(), &eh, sizeof eh);

    Elf64_Phdr load {};
    load.p_type = PT_LOAD;
    load.p_offset = 0x200;
    load.p_paddr = paddr;
    load.p_vaddr = paddr;
    load.p_filesz = payload.size();
    load.p_memsz = memsz;
    std::memcpy(file.data() + sizeof eh, &load, sizeof load);

    if (with_note) {
        // namesz=4 "Xen\0", descsz=4, type=18, entry = paddr + 0x10
        std::uint32_t note[5] = { 4, 4, xen_elfnote_phys32_entry, 0, static_cast<std::uint32_t>(paddr + 0x10) };
        std::memcpy(&note[3], "Xen", 4);
        Elf64_Phdr ph {};
        ph.p_type = PT_NOTE;
        ph.p_offset = 0x180;
        ph.p_filesz = sizeof note;
        std::memcpy(file.data() + sizeof eh + sizeof load, &ph, sizeof ph);
        std::memcpy(file.data() + 0x180, note, sizeof note);
    }
    // resize + memcpy rather than insert: g++ 12 reports a false array-bounds
    // warning for vector::insert of bytes here.
    std::size_t header_end = file.size();
    file.resize(header_end + payload.size());
    if (!payload.empty())
        std::memcpy(file.data() + header_end, payload.data(), payload.size());
    return file;
}

Elf64_Phdr& phdr(std::vector<std::byte>& file, int i)
{
    // SAFETY: the test built the file with its program headers right after the ELF header, aligned to 8.
    return *reinterpret_cast<Elf64_Phdr*>(file.data() + sizeof(Elf64_Ehdr) + static_cast<std::size_t>(i) * sizeof(Elf64_Phdr));
}

bool says(Result<ElfImage> const& r, std::string const& what)
{
    return !r.has_value() && r.error().kind == ErrorKind::BadInput && r.error().message.find(what) != std::string::npos;
}

} // namespace

TEST_CASE("a well-formed PVH ELF parses and loads, zero-filling its tail")
{
    std::vector<std::byte> payload(100, std::byte { 0xab });
    auto file = make_elf(0x100000, payload, 0x2000);
    auto image = parse_elf(file);
    REQUIRE(image.has_value());
    CHECK(image.value().pvh_entry.value() == 0x100010);
    CHECK(image.value().lowest == 0x100000);
    CHECK(image.value().highest == 0x102000);

    std::vector<std::byte> ram(4 << 20, std::byte { 0xcc });
    GuestMemory mem({ { 0, ram.size(), ram.data() } });
    REQUIRE(load_elf_segments(image.value(), file, mem, layout::high_memory).has_value());
    CHECK(ram[0x100000] == std::byte { 0xab });
    CHECK(ram[0x100063] == std::byte { 0xab });
    CHECK(ram[0x100064] == std::byte { 0 });
    CHECK(ram[0x101fff] == std::byte { 0 });
    CHECK(ram[0x102000] == std::byte { 0xcc });
}

TEST_CASE("malformed ELF files are refused with a clear message")
{
    std::vector<std::byte> payload(64, std::byte { 1 });
    CHECK(says(parse_elf(std::vector<std::byte>(3)), "not an ELF file"));
    std::vector<std::byte> text(100, std::byte { 'x' });
    CHECK(says(parse_elf(text), "not an ELF file"));

    auto file = make_elf(0x100000, payload, 64);
    auto truncated = std::vector<std::byte>(file.begin(), file.begin() + 40);
    CHECK(says(parse_elf(truncated), "truncated"));
    truncated = std::vector<std::byte>(file.begin(), file.begin() + 0x210);
    CHECK(says(parse_elf(truncated), "past the end of the file"));

    auto big = file;
    phdr(big, 0).p_filesz = 128;
    CHECK(says(parse_elf(big), "file size larger than its memory size"));

    auto wrap = file;
    phdr(wrap, 0).p_paddr = ~std::uint64_t(0) - 8;
    CHECK(says(parse_elf(wrap), "wraps"));

    auto huge_offset = file;
    phdr(huge_offset, 0).p_offset = ~std::uint64_t(0) - 4;
    CHECK(says(parse_elf(huge_offset), "past the end"));

    auto overlap = file;
    phdr(overlap, 1) = phdr(overlap, 0);
    phdr(overlap, 1).p_paddr += 32;
    CHECK(says(parse_elf(overlap), "overlap"));

    auto no_load = file;
    phdr(no_load, 0).p_type = PT_NULL;
    CHECK(says(parse_elf(no_load), "no loadable segments"));

    // A note whose sizes run past its segment is ignored, not followed.
    auto bad_note = file;
    phdr(bad_note, 1).p_filesz = 8;
    auto parsed = parse_elf(bad_note);
    REQUIRE(parsed.has_value());
    CHECK_FALSE(parsed.value().pvh_entry.has_value());
}

TEST_CASE("loading refuses segments outside guest memory or in the boot area")
{
    std::vector<std::byte> ram(2 << 20);
    GuestMemory mem({ { 0, ram.size(), ram.data() } });
    std::vector<std::byte> payload(64, std::byte { 1 });

    auto outside = make_elf(0x1f0000, payload, 0x20000);
    auto image = parse_elf(outside);
    REQUIRE(image.has_value());
    auto r = load_elf_segments(image.value(), outside, mem, layout::high_memory);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("outside guest memory") != std::string::npos);

    auto low = make_elf(0x2000, payload, 64);
    image = parse_elf(low);
    REQUIRE(image.has_value());
    r = load_elf_segments(image.value(), low, mem, layout::high_memory);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("boot area") != std::string::npos);
}

TEST_CASE("the memory map reserves the BIOS area and skips the MMIO hole")
{
    auto small = build_memory_map(128ull << 20);
    REQUIRE(small.size() == 3);
    CHECK(small[0].addr == 0);
    CHECK(small[0].size == layout::low_ram_end);
    CHECK(small[1].type == MemoryType::Reserved);
    CHECK(small[1].addr + small[1].size == layout::bios_end);
    CHECK(small[2].addr == layout::high_memory);
    CHECK(small[2].addr + small[2].size == 128ull << 20);

    auto large = build_memory_map(5ull << 30);
    REQUIRE(large.size() == 4);
    CHECK(large[2].addr + large[2].size == layout::mmio_hole_start);
    CHECK(large[3].addr == layout::mmio_hole_end);
    CHECK(large[3].size == 2ull << 30);
}

TEST_CASE("hvm_start_info version 1 carries the command line, memory map, RSDP and initrd")
{
    std::vector<std::byte> ram(4 << 20);
    GuestMemory mem({ { 0, ram.size(), ram.data() } });
    PvhBootInfo info;
    info.cmdline = "console=ttyS0 hello=1";
    info.memory_map = build_memory_map(ram.size());
    info.rsdp = layout::bios_start;
    info.initrd_addr = 0x300000;
    info.initrd_size = 1234;
    auto at = write_pvh_start_info(mem, info);
    REQUIRE(at.has_value());
    auto start = mem.read<HvmStartInfo>(at.value()).value();
    CHECK(start.magic == hvm_start_magic);
    CHECK(start.version == 1);
    CHECK(start.rsdp_paddr == layout::bios_start);
    CHECK(start.memmap_entries == info.memory_map.size());
    CHECK(start.nr_modules == 1);
    auto module = mem.read<HvmModlistEntry>(start.modlist_paddr).value();
    CHECK(module.paddr == 0x300000);
    CHECK(module.size == 1234);
    auto e0 = mem.read<HvmMemmapEntry>(start.memmap_paddr).value();
    CHECK(e0.addr == 0);
    CHECK(e0.type == 1);
    auto cmd = mem.slice(start.cmdline_paddr, info.cmdline.size() + 1).value();
    CHECK(std::string(reinterpret_cast<char const*>(cmd.data())) == info.cmdline);

    info.cmdline.assign(layout::cmdline_max, 'a');
    CHECK_FALSE(write_pvh_start_info(mem, info).has_value());
}

TEST_CASE("initrd placement: page aligned, high, above the kernel, or a clear error")
{
    auto at = place_initrd(64ull << 20, 0x200000, 5000, layout::mmio_hole_start);
    REQUIRE(at.has_value());
    CHECK(at.value() % 4096 == 0);
    CHECK(at.value() + 5000 <= 64ull << 20);
    CHECK(at.value() >= (64ull << 20) - 4096 * 3);
    CHECK_FALSE(place_initrd(64ull << 20, 60ull << 20, 8ull << 20, layout::mmio_hole_start).has_value());
}
