// ELF parsing for guest images: the loadable segments and the notes a boot
// protocol looks for (the Xen PVH entry note). Parsing is pure and bounds-checked
// over a byte span, so a malformed file yields an Error, never a wild read;
// loading copies segments into guest memory after checking each lies inside it.
// Threading: pure functions.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace strata {

struct ElfSegment {
    std::uint64_t paddr;
    std::uint64_t file_offset;
    std::uint64_t file_size;
    std::uint64_t mem_size;
};

struct ElfImage {
    bool is_64bit { true };
    std::uint64_t entry { 0 };                  // e_entry (a virtual address)
    std::optional<std::uint32_t> pvh_entry;    // XEN_ELFNOTE_PHYS32_ENTRY
    std::vector<ElfSegment> segments;          // PT_LOAD, sorted by paddr
    std::uint64_t lowest { 0 };                 // lowest paddr loaded
    std::uint64_t highest { 0 };                // end of the highest segment
};

constexpr std::uint32_t xen_elfnote_phys32_entry = 18;

// Parses an ELF32 or ELF64 x86 executable. Fails with BadInput on a file that is
// not ELF, is truncated, has segments past the end of the file, overlapping
// segments, or an address range that wraps.
[[nodiscard]] Result<ElfImage> parse_elf(std::span<std::byte const> file);

// Copies every segment into guest memory and zero-fills its tail; fails with
// BadInput naming the segment if one does not lie inside guest RAM or overlaps
// [0, reserved_below), the area where strata keeps boot information.
[[nodiscard]] Status load_elf_segments(ElfImage const& image, std::span<std::byte const> file, GuestMemory const& memory, std::uint64_t reserved_below);

} // namespace strata
