// The Xen PVH start-of-day structures (xen/include/public/arch-x86/hvm/start_info.h):
// hvm_start_info version 1, its module list entries and memory map entries. Both
// PVH writers use them: the loader's for firmware and PVH kernels (loader/pvh.h)
// and Linux boot's for kernels entered through their PHYS32_ENTRY note
// (linux/pvh_boot.h). Header-only, so strata_linux needs no link to strata_vmm.
// Threading: types only.
#pragma once

#include <cstdint>

namespace strata {

struct HvmStartInfo {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint32_t flags;
    std::uint32_t nr_modules;
    std::uint64_t modlist_paddr;
    std::uint64_t cmdline_paddr;
    std::uint64_t rsdp_paddr;
    std::uint64_t memmap_paddr;
    std::uint32_t memmap_entries;
    std::uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
    std::uint64_t paddr;
    std::uint64_t size;
    std::uint64_t cmdline_paddr;
    std::uint64_t reserved;
};

struct HvmMemmapEntry {
    std::uint64_t addr;
    std::uint64_t size;
    std::uint32_t type;
    std::uint32_t reserved;
};

static_assert(sizeof(HvmModlistEntry) == 32);
static_assert(sizeof(HvmMemmapEntry) == 24);

inline constexpr std::uint32_t hvm_start_magic = 0x336ec578;

} // namespace strata
