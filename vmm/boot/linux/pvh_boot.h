// The PVH boot information for a Linux kernel entered through its Xen
// PHYS32_ENTRY note: hvm_start_info version 1 with the memory map, the command
// line and the initrd as module 0 (xen/include/public/arch-x86/hvm/start_info.h).
// It uses the same guest addresses (vmm/layout.h) and structures
// (vmm/boot/start_info.h) as vmm/boot/loader/pvh.h.
// Threading: pure functions over a GuestMemory.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"
#include "vmm/boot/linux/boot_params.h"
#include "vmm/boot/start_info.h"

#include <cstdint>
#include <span>

namespace strata::linux_boot {

using PvhStartInfo = HvmStartInfo;
using PvhModule = HvmModlistEntry;
using PvhMemmapEntry = HvmMemmapEntry;
inline constexpr std::uint32_t kPvhMagic = hvm_start_magic;

struct PvhInputs {
    std::uint64_t cmdline_addr { 0 };
    std::uint64_t initrd_addr { 0 };
    std::uint64_t initrd_size { 0 }; // 0: no module
    std::uint64_t rsdp_addr { 0 };
    std::span<E820Entry const> e820;
};

// Writes start_info, memmap and module list at vmm/layout.h's PVH addresses and
// returns the start_info address (for %ebx).
[[nodiscard]] Result<std::uint64_t> write_pvh_boot_info(GuestMemory const& mem, PvhInputs const& in);

} // namespace strata::linux_boot
