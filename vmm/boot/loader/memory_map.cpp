#include "vmm/boot/loader/memory_map.h"

#include "vmm/layout.h"

namespace strata {

std::uint64_t low_ram_end(std::uint64_t ram_size)
{
    return ram_size < layout::mmio_hole_start ? ram_size : layout::mmio_hole_start;
}

std::vector<MemoryMapEntry> build_memory_map(std::uint64_t ram_size)
{
    std::vector<MemoryMapEntry> map;
    map.push_back({ 0, layout::low_ram_end, MemoryType::Ram });
    map.push_back({ layout::low_ram_end, layout::bios_end - layout::low_ram_end, MemoryType::Reserved });
    std::uint64_t low_end = strata::low_ram_end(ram_size);
    if (low_end > layout::high_memory)
        map.push_back({ layout::high_memory, low_end - layout::high_memory, MemoryType::Ram });
    if (ram_size > low_end)
        map.push_back({ layout::mmio_hole_end, ram_size - low_end, MemoryType::Ram });
    return map;
}

} // namespace strata
