// The PVH boot information for a Linux kernel entered through its Xen
// PHYS32_ENTRY note: hvm_start_info version 1 with the memory map, the command
// line and the initrd as module 0 (xen/include/public/arch-x86/hvm/start_info.h).
// It uses the same guest addresses as vmm/boot/loader/pvh.h (vmm/layout.h); this copy
// exists so that strata_linux does not link back into strata_vmm.
// Threading: pure functions over a GuestMemory.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"
#include "vmm/boot/linux/boot_params.h"

#include <cstdint>
#include <span>

namespace strata::linux_boot {

#pragma pack(push, 1)
struct PvhStartInfo {
    std::uint32_t magic;          // 0x336ec578
    std::uint32_t version;        // 1: memmap fields valid
    std::uint32_t flags;
    std::uint32_t nr_modules;
    std::uint64_t modlist_paddr;
    std::uint64_t cmdline_paddr;
    std::uint64_t rsdp_paddr;
    std::uint64_t memmap_paddr;
    std::uint32_t memmap_entries;
    std::uint32_t reserved;
};
struct PvhModule {
    std::uint64_t paddr;
    std::uint64_t size;
    std::uint64_t cmdline_paddr;
    std::uint64_t reserved;
};
struct PvhMemmapEntry {
    std::uint64_t addr;
    std::uint64_t size;
    std::uint32_t type;
    std::uint32_t reserved;
};
#pragma pack(pop)
static_assert(sizeof(PvhStartInfo) == 56);
static_assert(sizeof(PvhModule) == 32);
static_assert(sizeof(PvhMemmapEntry) == 24);

inline constexpr std::uint32_t kPvhMagic = 0x336ec578;

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
