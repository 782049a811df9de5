// A Linux kernel as an ELF file (vmlinux, or the payload a bzImage carries): its
// loadable segments at their physical addresses (p_paddr, i.e. LOAD_PHYSICAL_ADDR
// for Linux, whose p_vaddr is the kernel map at 0xffffffff8...), the 64-bit entry
// translated to a physical address, and the PVH entry from the Xen
// PHYS32_ENTRY note (4 or 8 bytes of descriptor: Linux emits a pointer-sized one).
// Parsing is bounds-checked, over a byte span or an open file (of which it reads
// only the headers and notes); loading from a file reads each segment straight
// into guest RAM.
// Threading: pure functions (the file variants use pread, no file offset).
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace strata::linux_boot {

struct KernelSegment {
    std::uint64_t paddr;
    std::uint64_t vaddr;
    std::uint64_t file_offset;
    std::uint64_t file_size;
    std::uint64_t mem_size;
};

struct ElfKernel {
    bool is_64bit { true };
    std::uint64_t entry_vaddr { 0 };             // e_entry as written
    std::optional<std::uint64_t> entry_paddr;    // e_entry as a physical address, if it lies in a segment
    std::optional<std::uint64_t> pvh_entry;      // XEN_ELFNOTE_PHYS32_ENTRY (a 32-bit physical address)
    bool has_linux_note { false };               // a note named "Linux": a vmlinux with the 64-bit entry
    std::vector<KernelSegment> segments;         // PT_LOAD with a non-zero memory size, sorted by paddr
    std::uint64_t lowest { 0 };                  // lowest paddr loaded
    std::uint64_t highest { 0 };                 // end of the highest segment
};

inline constexpr std::uint32_t kXenElfnotePhys32Entry = 18;

bool looks_like_elf(std::span<std::byte const> file);

// Fails with BadInput on a truncated or malformed file, a non-x86 machine,
// segments outside the file or overlapping each other, or addresses that wrap.
[[nodiscard]] Result<ElfKernel> parse_elf_kernel(std::span<std::byte const> file);

// The same for an open file of `size` bytes.
[[nodiscard]] Result<ElfKernel> parse_elf_kernel_file(int fd, std::uint64_t size);

// Copies every segment to its paddr and zero-fills the rest of its memory size,
// except where memory_is_zero says guest RAM was never written since it was
// mapped (anonymous memory reads as zero; filling it again only costs time and
// commits the pages).
[[nodiscard]] Status load_elf_kernel(ElfKernel const& kernel, std::span<std::byte const> file, GuestMemory const& mem,
    bool memory_is_zero = false);
// The same, reading each segment from the file straight into guest RAM.
[[nodiscard]] Status load_elf_kernel_file(ElfKernel const& kernel, int fd, std::uint64_t size, GuestMemory const& mem,
    bool memory_is_zero = false);

} // namespace strata::linux_boot
