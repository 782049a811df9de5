#include "vmm/boot/linux/elf_kernel.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace strata::linux_boot {

namespace {

Error bad(std::string const& what) { return make_error(ErrorKind::BadInput, "not a usable ELF kernel: " + what); }

template<typename T>
std::optional<T> read_at(std::span<std::byte const> f, std::uint64_t off)
{
    if (off > f.size() || sizeof(T) > f.size() - off)
        return std::nullopt;
    T v;
    std::memcpy(&v, f.data() + off, sizeof(T));
    return v;
}

// Walks one PT_NOTE area for Xen's PHYS32_ENTRY note and for any note named
// "Linux" (the kernel's build-salt and version notes), which marks a vmlinux.
void scan_notes(std::span<std::byte const> f, std::uint64_t off, std::uint64_t size, ElfKernel& k)
{
    if (off > f.size() || size > f.size() - off)
        return;
    auto align4 = [](std::uint64_t v) { return (v + 3) & ~std::uint64_t(3); };
    std::uint64_t pos = off;
    std::uint64_t end = off + size;
    while (end - pos >= 12) {
        std::uint32_t namesz = *read_at<std::uint32_t>(f, pos);
        std::uint32_t descsz = *read_at<std::uint32_t>(f, pos + 4);
        std::uint32_t type = *read_at<std::uint32_t>(f, pos + 8);
        std::uint64_t name_at = pos + 12;
        std::uint64_t desc_at = name_at + align4(namesz);
        std::uint64_t next = desc_at + align4(descsz);
        if (next > end || next <= pos)
            return;
        if (namesz == 6 && std::memcmp(f.data() + name_at, "Linux", 6) == 0)
            k.has_linux_note = true;
        if (type == kXenElfnotePhys32Entry && namesz == 4 && std::memcmp(f.data() + name_at, "Xen", 4) == 0
            && !k.pvh_entry) {
            if (descsz == 4)
                k.pvh_entry = *read_at<std::uint32_t>(f, desc_at);
            else if (descsz == 8)
                k.pvh_entry = *read_at<std::uint64_t>(f, desc_at);
        }
        pos = next;
    }
}

} // namespace

bool looks_like_elf(std::span<std::byte const> file)
{
    return file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0;
}

Result<ElfKernel> parse_elf_kernel(std::span<std::byte const> f)
{
    if (f.size() < EI_NIDENT || !looks_like_elf(f))
        return bad("no ELF magic");
    ElfKernel k;
    auto cls = std::to_integer<int>(f[EI_CLASS]);
    if (cls != ELFCLASS64 && cls != ELFCLASS32)
        return bad("unknown ELF class");
    if (std::to_integer<int>(f[EI_DATA]) != ELFDATA2LSB)
        return bad("not little-endian");
    k.is_64bit = cls == ELFCLASS64;

    std::uint64_t phoff = 0;
    std::uint16_t phnum = 0, phentsize = 0, machine = 0;
    if (k.is_64bit) {
        auto eh = read_at<Elf64_Ehdr>(f, 0);
        if (!eh)
            return bad("truncated ELF header");
        machine = eh->e_machine;
        k.entry_vaddr = eh->e_entry;
        phoff = eh->e_phoff;
        phnum = eh->e_phnum;
        phentsize = eh->e_phentsize;
        if (phentsize != sizeof(Elf64_Phdr))
            return bad("unexpected program header size");
    } else {
        auto eh = read_at<Elf32_Ehdr>(f, 0);
        if (!eh)
            return bad("truncated ELF header");
        machine = eh->e_machine;
        k.entry_vaddr = eh->e_entry;
        phoff = eh->e_phoff;
        phnum = eh->e_phnum;
        phentsize = eh->e_phentsize;
        if (phentsize != sizeof(Elf32_Phdr))
            return bad("unexpected program header size");
    }
    if (machine != EM_X86_64 && machine != EM_386)
        return bad("not an x86 executable");
    if (phnum == 0 || phnum > 256)
        return bad("no (or too many) program headers");
    if (phoff > f.size() || std::uint64_t(phnum) * phentsize > f.size() - phoff)
        return bad("program headers lie past the end of the file (truncated?)");

    for (std::uint16_t i = 0; i < phnum; ++i) {
        std::uint64_t at = phoff + std::uint64_t(i) * phentsize;
        std::uint32_t type;
        KernelSegment s {};
        if (k.is_64bit) {
            auto ph = *read_at<Elf64_Phdr>(f, at);
            type = ph.p_type;
            s = { ph.p_paddr, ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz };
        } else {
            auto ph = *read_at<Elf32_Phdr>(f, at);
            type = ph.p_type;
            s = { ph.p_paddr, ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz };
        }
        if (type == PT_NOTE) {
            scan_notes(f, s.file_offset, s.file_size, k);
            continue;
        }
        if (type != PT_LOAD || s.mem_size == 0)
            continue;
        std::string name = "segment " + std::to_string(i);
        if (s.file_size > s.mem_size)
            return bad(name + " has a file size larger than its memory size");
        if (s.file_offset > f.size() || s.file_size > f.size() - s.file_offset)
            return bad(name + " lies past the end of the file (truncated?)");
        if (s.paddr + s.mem_size < s.paddr || s.vaddr + s.mem_size < s.vaddr)
            return bad(name + " wraps around the address space");
        k.segments.push_back(s);
    }
    if (k.segments.empty())
        return bad("no loadable segment");
    std::sort(k.segments.begin(), k.segments.end(), [](auto const& a, auto const& b) { return a.paddr < b.paddr; });
    for (std::size_t i = 1; i < k.segments.size(); ++i)
        if (k.segments[i - 1].paddr + k.segments[i - 1].mem_size > k.segments[i].paddr)
            return bad("loadable segments overlap");
    k.lowest = k.segments.front().paddr;
    k.highest = k.segments.back().paddr + k.segments.back().mem_size;

    // Linux links e_entry as a physical address (phys_startup_64); other kernels
    // give a virtual one, which maps to physical through its segment.
    for (auto const& s : k.segments)
        if (k.entry_vaddr >= s.vaddr && k.entry_vaddr - s.vaddr < s.mem_size)
            k.entry_paddr = s.paddr + (k.entry_vaddr - s.vaddr);
    if (!k.entry_paddr)
        for (auto const& s : k.segments)
            if (k.entry_vaddr >= s.paddr && k.entry_vaddr - s.paddr < s.mem_size)
                k.entry_paddr = k.entry_vaddr;
    return k;
}

Status load_elf_kernel(ElfKernel const& k, std::span<std::byte const> file, GuestMemory const& mem)
{
    for (auto const& s : k.segments) {
        auto dst = mem.slice(s.paddr, s.mem_size);
        if (!dst)
            return make_error(ErrorKind::Usage, "the kernel's segment at 0x" + [&] {
                char b[32];
                std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(s.paddr));
                return std::string(b);
            }() + " does not fit in guest RAM; give the VM more memory");
        std::memcpy(dst.value().data(), file.data() + s.file_offset, s.file_size);
        std::memset(dst.value().data() + s.file_size, 0, s.mem_size - s.file_size);
    }
    return ok();
}

} // namespace strata::linux_boot
