#include "vmm/boot/linux/elf_kernel.h"

#include "base/fd.h"
#include "base/hex.h"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <string>

namespace strata::linux_boot {

namespace {

Error bad_elf_kernel(std::string const& what) { return make_error(ErrorKind::BadInput, "not a usable ELF kernel: " + what); }

// Reads bounds-checked pieces of a kernel file, held in memory or open as a file,
// so the parser never needs the whole file (a vmlinux is some 50 MB, of which the
// parser reads a few hundred bytes).
class Source {
public:
    explicit Source(std::span<std::byte const> bytes)
        : m_bytes(bytes)
        , m_size(bytes.size())
    {
    }
    Source(int fd, std::uint64_t size)
        : m_fd(fd)
        , m_size(size)
    {
    }
    std::uint64_t size() const { return m_size; }
    // False when [off, off + out.size()) is not inside the file or cannot be read.
    bool read(std::uint64_t off, std::span<std::byte> out) const
    {
        if (off > m_size || out.size() > m_size - off)
            return false;
        if (m_fd < 0) {
            std::memcpy(out.data(), m_bytes.data() + off, out.size());
            return true;
        }
        return pread_all(m_fd, out, off).has_value();
    }
    template<typename T>
    std::optional<T> read_at(std::uint64_t off) const
    {
        T v;
        if (!read(off, std::as_writable_bytes(std::span(&v, 1))))
            return std::nullopt;
        return v;
    }

private:
    std::span<std::byte const> m_bytes;
    int m_fd { -1 };
    std::uint64_t m_size;
};

// Note areas larger than this are not scanned: Linux's are a few hundred bytes.
constexpr std::uint64_t kMaxNoteArea = 1 << 20;

// Walks one PT_NOTE area for Xen's PHYS32_ENTRY note and for any note named
// "Linux" (the kernel's build-salt and version notes), which marks a vmlinux.
void scan_notes(Source const& src, std::uint64_t off, std::uint64_t size, ElfKernel& k)
{
    if (size > kMaxNoteArea)
        return;
    std::vector<std::byte> area(static_cast<std::size_t>(size));
    if (!src.read(off, area))
        return;
    Source f(area);
    auto align4 = [](std::uint64_t v) { return (v + 3) & ~std::uint64_t(3); };
    std::uint64_t pos = 0;
    std::uint64_t end = size;
    while (end - pos >= 12) {
        std::uint32_t namesz = *f.read_at<std::uint32_t>(pos);
        std::uint32_t descsz = *f.read_at<std::uint32_t>(pos + 4);
        std::uint32_t type = *f.read_at<std::uint32_t>(pos + 8);
        std::uint64_t name_at = pos + 12;
        std::uint64_t desc_at = name_at + align4(namesz);
        std::uint64_t next = desc_at + align4(descsz);
        if (next > end || next <= pos)
            return;
        if (namesz == 6 && std::memcmp(area.data() + name_at, "Linux", 6) == 0)
            k.has_linux_note = true;
        if (type == kXenElfnotePhys32Entry && namesz == 4 && std::memcmp(area.data() + name_at, "Xen", 4) == 0
            && !k.pvh_entry) {
            if (descsz == 4)
                k.pvh_entry = *f.read_at<std::uint32_t>(desc_at);
            else if (descsz == 8)
                k.pvh_entry = *f.read_at<std::uint64_t>(desc_at);
        }
        pos = next;
    }
}

Result<ElfKernel> parse(Source const& f)
{
    std::array<std::byte, EI_NIDENT> ident {};
    if (!f.read(0, ident) || !looks_like_elf(ident))
        return bad_elf_kernel("no ELF magic");
    ElfKernel k;
    auto cls = std::to_integer<int>(ident[EI_CLASS]);
    if (cls != ELFCLASS64 && cls != ELFCLASS32)
        return bad_elf_kernel("unknown ELF class");
    if (std::to_integer<int>(ident[EI_DATA]) != ELFDATA2LSB)
        return bad_elf_kernel("not little-endian");
    k.is_64bit = cls == ELFCLASS64;

    // ELF32 and ELF64 headers name the same fields at different widths.
    std::uint64_t phoff = 0;
    std::uint16_t phnum = 0, phentsize = 0, machine = 0;
    auto header = [&]<typename Ehdr, typename Phdr>() -> Status {
        auto eh = f.read_at<Ehdr>(0);
        if (!eh)
            return bad_elf_kernel("truncated ELF header");
        machine = eh->e_machine;
        k.entry_vaddr = eh->e_entry;
        phoff = eh->e_phoff;
        phnum = eh->e_phnum;
        phentsize = eh->e_phentsize;
        if (phentsize != sizeof(Phdr))
            return bad_elf_kernel("unexpected program header size");
        return ok();
    };
    if (auto s = k.is_64bit ? header.template operator()<Elf64_Ehdr, Elf64_Phdr>() : header.template operator()<Elf32_Ehdr, Elf32_Phdr>(); !s)
        return s.error();
    if (machine != EM_X86_64 && machine != EM_386)
        return bad_elf_kernel("not an x86 executable");
    if (phnum == 0 || phnum > 256)
        return bad_elf_kernel("no (or too many) program headers");
    if (phoff > f.size() || std::uint64_t(phnum) * phentsize > f.size() - phoff)
        return bad_elf_kernel("program headers lie past the end of the file (truncated?)");

    for (std::uint16_t i = 0; i < phnum; ++i) {
        std::uint64_t at = phoff + std::uint64_t(i) * phentsize;
        std::uint32_t type = PT_NULL;
        KernelSegment s {};
        auto segment = [&]<typename Phdr>() {
            auto ph = f.read_at<Phdr>(at);
            if (!ph)
                return false;
            type = ph->p_type;
            s = { ph->p_paddr, ph->p_vaddr, ph->p_offset, ph->p_filesz, ph->p_memsz };
            return true;
        };
        if (!(k.is_64bit ? segment.template operator()<Elf64_Phdr>() : segment.template operator()<Elf32_Phdr>()))
            return bad_elf_kernel("the program headers cannot be read");
        if (type == PT_NOTE) {
            scan_notes(f, s.file_offset, s.file_size, k);
            continue;
        }
        if (type != PT_LOAD || s.mem_size == 0)
            continue;
        std::string name = "segment " + std::to_string(i);
        if (s.file_size > s.mem_size)
            return bad_elf_kernel(name + " has a file size larger than its memory size");
        if (s.file_offset > f.size() || s.file_size > f.size() - s.file_offset)
            return bad_elf_kernel(name + " lies past the end of the file (truncated?)");
        if (s.paddr + s.mem_size < s.paddr || s.vaddr + s.mem_size < s.vaddr)
            return bad_elf_kernel(name + " wraps around the address space");
        k.segments.push_back(s);
    }
    if (k.segments.empty())
        return bad_elf_kernel("no loadable segment");
    std::sort(k.segments.begin(), k.segments.end(), [](auto const& a, auto const& b) { return a.paddr < b.paddr; });
    for (std::size_t i = 1; i < k.segments.size(); ++i)
        if (k.segments[i - 1].paddr + k.segments[i - 1].mem_size > k.segments[i].paddr)
            return bad_elf_kernel("loadable segments overlap");
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

// Copies (from memory) or reads (from a file, straight into guest RAM: no buffer
// in between) every segment's file bytes to its paddr, then zero-fills the rest
// of its memory size unless the caller vouches that guest RAM there is still zero.
Status load(ElfKernel const& k, Source const& f, GuestMemory const& mem, bool memory_is_zero)
{
    for (auto const& s : k.segments) {
        auto dst = mem.slice(s.paddr, s.mem_size);
        if (!dst)
            return make_error(ErrorKind::Usage, "the kernel's segment at " + hex(s.paddr)
                    + " does not fit in guest RAM; give the VM more memory");
        if (!f.read(s.file_offset, dst.value().first(s.file_size)))
            return make_error(ErrorKind::Io, "cannot read the kernel's segment at file offset " + hex(s.file_offset));
        if (!memory_is_zero)
            std::memset(dst.value().data() + s.file_size, 0, s.mem_size - s.file_size);
    }
    return ok();
}

} // namespace

bool looks_like_elf(std::span<std::byte const> file)
{
    return file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0;
}

Result<ElfKernel> parse_elf_kernel(std::span<std::byte const> f)
{
    return parse(Source(f));
}

Result<ElfKernel> parse_elf_kernel_file(int fd, std::uint64_t size)
{
    return parse(Source(fd, size));
}

Status load_elf_kernel(ElfKernel const& k, std::span<std::byte const> file, GuestMemory const& mem, bool memory_is_zero)
{
    return load(k, Source(file), mem, memory_is_zero);
}

Status load_elf_kernel_file(ElfKernel const& k, int fd, std::uint64_t size, GuestMemory const& mem, bool memory_is_zero)
{
    return load(k, Source(fd, size), mem, memory_is_zero);
}

} // namespace strata::linux_boot
