// The guest's physical memory map as the boot protocols report it (PVH's memmap
// and Linux's e820 share these entries and type numbers).
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace strata {

enum class MemoryType : std::uint32_t {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
};

struct MemoryMapEntry {
    std::uint64_t addr;
    std::uint64_t size;
    MemoryType type;
};

// RAM below the EBDA, the reserved EBDA/BIOS area that holds the ACPI tables,
// RAM from 1 MiB to the MMIO hole, and RAM above 4 GiB if the VM is that large.
std::vector<MemoryMapEntry> build_memory_map(std::uint64_t ram_size);

// The end of RAM below the 32-bit MMIO hole.
std::uint64_t low_ram_end(std::uint64_t ram_size);

} // namespace strata
