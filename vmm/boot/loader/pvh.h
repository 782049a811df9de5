// The Xen PVH boot ABI as strata implements it for firmware programs and PVH
// kernels: the hvm_start_info structure (version 1, with the memory map), the
// command line, and an optional initrd passed as module 0.
// Reference: xen/include/public/arch-x86/hvm/start_info.h and Linux's
// Documentation/arch/x86/boot.rst for what PVH kernels expect.
// Threading: pure functions over a GuestMemory.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"
#include "vmm/boot/loader/memory_map.h"
#include "vmm/boot/start_info.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace strata {

struct PvhBootInfo {
    std::string cmdline;
    std::vector<MemoryMapEntry> memory_map;
    std::uint64_t rsdp { 0 };
    std::optional<std::uint64_t> initrd_addr;
    std::uint64_t initrd_size { 0 };
};

// Writes the command line, memory map, module list and hvm_start_info at their
// fixed places in vmm/layout.h, returning the start_info address for %ebx.
[[nodiscard]] Result<std::uint32_t> write_pvh_start_info(GuestMemory const& memory, PvhBootInfo const& info);

// Picks a page-aligned place for an initrd of `size` bytes as high as possible in
// low RAM but above `above` (the end of the kernel), or fails if it does not fit.
[[nodiscard]] Result<std::uint64_t> place_initrd(std::uint64_t ram_size, std::uint64_t above, std::uint64_t size, std::uint64_t max_addr);

} // namespace strata
