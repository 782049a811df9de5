// Builders of small synthetic kernels for the Linux loader tests: an ELF64 with
// one PT_LOAD segment (and optional "Linux" and Xen PVH notes), and a bzImage
// wrapping a payload behind a setup header the test can then corrupt.
#pragma once

#include "vmm/boot/linux/boot_params.h"

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace strata::test {

using Bytes = std::vector<std::byte>;

template<typename T>
void put(Bytes& b, std::size_t off, T const& v)
{
    if (b.size() < off + sizeof(T))
        b.resize(off + sizeof(T));
    std::memcpy(b.data() + off, &v, sizeof(T));
}

template<typename T>
T get(Bytes const& b, std::size_t off)
{
    T v;
    std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}

struct ElfSpec {
    std::uint64_t paddr { 0x1000000 };
    std::uint64_t vaddr { 0xffffffff81000000 };
    std::uint64_t entry { 0x1000000 }; // physical, as Linux links it
    std::uint64_t code_size { 0x2000 };
    std::uint64_t bss_size { 0x3000 };
    bool linux_note { true };
    std::optional<std::uint64_t> pvh_entry {}; // 8-byte descriptor, as Linux emits
};

inline Bytes make_elf_kernel(ElfSpec const& s)
{
    Bytes b;
    std::size_t const phoff = sizeof(Elf64_Ehdr);
    std::size_t const notes_off = 0x100;
    // Notes: "Linux" (type 6, 4-byte desc) and "Xen" PHYS32_ENTRY (8-byte desc).
    Bytes notes;
    auto add_note = [&](char const* name, std::uint32_t type, std::uint64_t desc, std::uint32_t descsz) {
        std::uint32_t namesz = static_cast<std::uint32_t>(std::strlen(name) + 1);
        std::size_t at = notes.size();
        put(notes, at, namesz);
        put(notes, at + 4, descsz);
        put(notes, at + 8, type);
        std::size_t name_at = at + 12;
        notes.resize(name_at + ((namesz + 3) & ~3u), std::byte { 0 });
        std::memcpy(notes.data() + name_at, name, namesz);
        std::size_t desc_at = notes.size();
        notes.resize(desc_at + ((descsz + 3) & ~3u), std::byte { 0 });
        std::memcpy(notes.data() + desc_at, &desc, descsz);
    };
    if (s.linux_note)
        add_note("Linux", 6, 0x060100, 4);
    if (s.pvh_entry)
        add_note("Xen", 18, *s.pvh_entry, 8);
    std::size_t const code_off = 0x1000;

    Elf64_Ehdr eh {};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = s.entry;
    eh.e_phoff = phoff;
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = notes.empty() ? 1 : 2;
    put(b, 0, eh);

    Elf64_Phdr load {};
    load.p_type = PT_LOAD;
    load.p_flags = PF_R | PF_X;
    load.p_offset = code_off;
    load.p_vaddr = s.vaddr;
    load.p_paddr = s.paddr;
    load.p_filesz = s.code_size;
    load.p_memsz = s.code_size + s.bss_size;
    load.p_align = 0x200000;
    put(b, phoff, load);
    if (!notes.empty()) {
        Elf64_Phdr note {};
        note.p_type = PT_NOTE;
        note.p_offset = notes_off;
        note.p_filesz = notes.size();
        note.p_memsz = notes.size();
        put(b, phoff + sizeof(Elf64_Phdr), note);
        b.resize(notes_off);
        b.insert(b.end(), notes.begin(), notes.end());
    }
    b.resize(code_off + s.code_size);
    for (std::size_t i = 0; i < s.code_size; ++i)
        b[code_off + i] = static_cast<std::byte>((i * 7 + 3) & 0xff);
    return b;
}

struct BzSpec {
    std::uint16_t version { 0x020f };
    std::uint8_t setup_sects { 4 };
    std::uint32_t init_size { 0x800000 };
    std::uint32_t initrd_addr_max { 0x7fffffff };
    std::uint32_t cmdline_size { 2047 };
    std::uint16_t xloadflags { linux_boot::kXlfKernel64 | linux_boot::kXlfCanBeLoadedAbove4G };
    std::size_t payload_offset { 0x300 };
};

// A bzImage: boot sector + setup_sects of setup, then protected-mode code with
// the payload at payload_offset and the 4-byte size trailer the kernel build adds.
inline Bytes make_bzimage(Bytes const& payload, BzSpec const& s = {}, std::uint32_t trailer = 0)
{
    std::size_t setup_size = (std::size_t(s.setup_sects) + 1) * 512;
    Bytes b(setup_size, std::byte { 0 });
    linux_boot::SetupHeader h {};
    h.setup_sects = s.setup_sects;
    h.boot_flag = linux_boot::kBootFlag;
    h.jump = static_cast<std::uint16_t>(0xeb | ((0x26c - 0x202) << 8)); // jmp short past the header
    h.header = linux_boot::kHdrS;
    h.version = s.version;
    h.loadflags = linux_boot::kLoadedHigh;
    h.code32_start = 0x100000;
    h.kernel_version = 0x200;
    h.initrd_addr_max = s.initrd_addr_max;
    h.kernel_alignment = 0x200000;
    h.relocatable_kernel = 1;
    h.min_alignment = 21;
    h.xloadflags = s.xloadflags;
    h.cmdline_size = s.cmdline_size;
    h.payload_offset = static_cast<std::uint32_t>(s.payload_offset);
    h.payload_length = static_cast<std::uint32_t>(payload.size() + 4);
    h.pref_address = 0x1000000;
    h.init_size = s.init_size;
    h.vid_mode = 0xfffd;
    std::memcpy(b.data() + linux_boot::kSetupHeaderOffset, &h, sizeof(h));
    Bytes pm(s.payload_offset, std::byte { 0x90 });
    pm.insert(pm.end(), payload.begin(), payload.end());
    std::uint32_t size_trailer = trailer;
    put(pm, pm.size(), size_trailer);
    pm.resize((pm.size() + 15) & ~std::size_t(15), std::byte { 0 });
    std::uint32_t syssize = static_cast<std::uint32_t>(pm.size() / 16);
    put(b, 0x1f4, syssize);
    b.insert(b.end(), pm.begin(), pm.end());
    return b;
}

} // namespace strata::test
