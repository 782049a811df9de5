#include "vmm/boot/loader/elf.h"

#include "base/hex.h"

#include <algorithm>
#include <cstring>
#include <elf.h>
#include <sstream>

namespace strata {

namespace {

Error bad_elf(std::string what)
{
    return make_error(ErrorKind::BadInput, std::move(what));
}

// Copies a T from file[offset] when the whole object is inside the file.
template<typename T>
std::optional<T> read_at(std::span<std::byte const> file, std::uint64_t offset)
{
    if (offset > file.size() || sizeof(T) > file.size() - offset)
        return std::nullopt;
    T value;
    std::memcpy(&value, file.data() + offset, sizeof(T));
    return value;
}

// Walks a note area, looking for Xen's PHYS32_ENTRY note.
std::optional<std::uint32_t> find_pvh_note(std::span<std::byte const> file, std::uint64_t offset, std::uint64_t size)
{
    if (offset > file.size() || size > file.size() - offset)
        return std::nullopt;
    std::uint64_t pos = offset;
    std::uint64_t end = offset + size;
    auto align4 = [](std::uint64_t v) { return (v + 3) & ~std::uint64_t(3); };
    while (end - pos >= 12) {
        auto namesz = read_at<std::uint32_t>(file, pos);
        auto descsz = read_at<std::uint32_t>(file, pos + 4);
        auto type = read_at<std::uint32_t>(file, pos + 8);
        if (!namesz || !descsz || !type)
            return std::nullopt;
        std::uint64_t name_at = pos + 12;
        std::uint64_t desc_at = name_at + align4(*namesz);
        std::uint64_t next = desc_at + align4(*descsz);
        if (next > end)
            return std::nullopt;
        if (*type == xen_elfnote_phys32_entry && *namesz == 4 && std::memcmp(file.data() + name_at, "Xen", 4) == 0 && *descsz >= 4)
            return read_at<std::uint32_t>(file, desc_at);
        pos = next;
    }
    return std::nullopt;
}

// The fields of the ELF header that loading needs, the same for both classes.
struct ElfHeader {
    std::uint16_t type;
    std::uint16_t machine;
    std::uint64_t entry;
    std::uint64_t phoff;
    std::uint64_t phnum;
    std::uint64_t phentsize;
};

template<typename Ehdr, typename Phdr>
Result<ElfHeader> read_header(std::span<std::byte const> file)
{
    auto eh = read_at<Ehdr>(file, 0);
    if (!eh)
        return bad_elf("truncated ELF header");
    if (eh->e_phentsize != sizeof(Phdr))
        return bad_elf("ELF program header size " + std::to_string(eh->e_phentsize) + " is not " + std::to_string(sizeof(Phdr)));
    return ElfHeader { eh->e_type, eh->e_machine, eh->e_entry, eh->e_phoff, eh->e_phnum, eh->e_phentsize };
}

} // namespace

Result<ElfImage> parse_elf(std::span<std::byte const> file)
{
    if (file.size() < EI_NIDENT || std::memcmp(file.data(), ELFMAG, SELFMAG) != 0)
        return bad_elf("not an ELF file (no ELF magic)");
    auto cls = static_cast<unsigned char>(file[EI_CLASS]);
    if (cls != ELFCLASS64 && cls != ELFCLASS32)
        return bad_elf("unknown ELF class " + std::to_string(cls));
    if (static_cast<unsigned char>(file[EI_DATA]) != ELFDATA2LSB)
        return bad_elf("not a little-endian ELF file");

    ElfImage image;
    image.is_64bit = cls == ELFCLASS64;
    auto header = image.is_64bit ? read_header<Elf64_Ehdr, Elf64_Phdr>(file) : read_header<Elf32_Ehdr, Elf32_Phdr>(file);
    if (!header)
        return header.error();
    auto [type, machine, entry, phoff, phnum, phentsize] = header.value();
    image.entry = entry;
    if (type != ET_EXEC)
        return bad_elf("ELF file is not an executable (e_type " + std::to_string(type) + ")");
    if (machine != EM_X86_64 && machine != EM_386)
        return bad_elf("ELF file is not for x86 (e_machine " + std::to_string(machine) + ")");
    if (phnum == 0)
        return bad_elf("ELF file has no program headers");
    if (phoff > file.size() || phnum * phentsize > file.size() - phoff)
        return bad_elf("ELF program headers lie past the end of the file (truncated?)");

    for (std::uint64_t i = 0; i < phnum; ++i) {
        std::uint64_t at = phoff + i * phentsize;
        std::uint32_t p_type;
        ElfSegment seg {};
        if (image.is_64bit) {
            auto ph = read_at<Elf64_Phdr>(file, at).value();
            p_type = ph.p_type;
            seg = { ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz };
        } else {
            auto ph = read_at<Elf32_Phdr>(file, at).value();
            p_type = ph.p_type;
            seg = { ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz };
        }
        if (p_type == PT_NOTE && !image.pvh_entry) {
            image.pvh_entry = find_pvh_note(file, seg.file_offset, seg.file_size);
            continue;
        }
        if (p_type != PT_LOAD || seg.mem_size == 0)
            continue;
        std::string name = "segment " + std::to_string(i);
        if (seg.file_size > seg.mem_size)
            return bad_elf(name + " has a file size larger than its memory size");
        if (seg.file_offset > file.size() || seg.file_size > file.size() - seg.file_offset)
            return bad_elf(name + " lies past the end of the file (truncated?)");
        if (seg.paddr + seg.mem_size < seg.paddr)
            return bad_elf(name + " wraps around the address space");
        image.segments.push_back(seg);
    }
    if (image.segments.empty())
        return bad_elf("ELF file has no loadable segments");
    std::sort(image.segments.begin(), image.segments.end(), [](auto const& a, auto const& b) { return a.paddr < b.paddr; });
    for (std::size_t i = 1; i < image.segments.size(); ++i) {
        auto const& prev = image.segments[i - 1];
        if (prev.paddr + prev.mem_size > image.segments[i].paddr)
            return bad_elf("ELF segments overlap at physical address " + hex(image.segments[i].paddr));
    }
    image.lowest = image.segments.front().paddr;
    image.highest = image.segments.back().paddr + image.segments.back().mem_size;
    return image;
}

Status load_elf_segments(ElfImage const& image, std::span<std::byte const> file, GuestMemory const& memory, std::uint64_t reserved_below)
{
    for (auto const& seg : image.segments) {
        std::string range = hex(seg.paddr) + "-" + hex(seg.paddr + seg.mem_size);
        if (seg.paddr < reserved_below)
            return bad_elf("ELF segment at " + range + " overlaps strata's boot area below " + hex(reserved_below));
        auto dest = memory.slice(seg.paddr, seg.mem_size);
        if (!dest)
            return bad_elf("ELF segment at " + range + " lies outside guest memory (" + std::to_string(memory.total_size() >> 20) + " MiB)");
        std::memcpy(dest.value().data(), file.data() + seg.file_offset, seg.file_size);
        std::memset(dest.value().data() + seg.file_size, 0, seg.mem_size - seg.file_size);
    }
    return ok();
}

} // namespace strata
