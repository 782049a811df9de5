#include "vmm/boot/loader/pvh.h"

#include "vmm/layout.h"

#include <cstring>

namespace strata {

Result<std::uint32_t> write_pvh_start_info(GuestMemory const& memory, PvhBootInfo const& info)
{
    using namespace layout;
    if (info.cmdline.size() + 1 > cmdline_max)
        return make_error(ErrorKind::Usage, "command line of " + std::to_string(info.cmdline.size()) + " bytes is longer than the " + std::to_string(cmdline_max - 1) + " strata allows");
    if (info.memory_map.size() * sizeof(HvmMemmapEntry) > pvh_modules - pvh_memmap)
        return make_error(ErrorKind::Internal, "memory map too large");

    STRATA_TRY(cmd, memory.slice(layout::cmdline, info.cmdline.size() + 1));
    std::memcpy(cmd.data(), info.cmdline.data(), info.cmdline.size());
    cmd[info.cmdline.size()] = std::byte { 0 };

    std::uint64_t at = pvh_memmap;
    for (auto const& e : info.memory_map) {
        HvmMemmapEntry entry { e.addr, e.size, static_cast<std::uint32_t>(e.type), 0 };
        STRATA_TRY(memory.write(at, entry));
        at += sizeof entry;
    }

    HvmStartInfo start {};
    start.magic = hvm_start_magic;
    start.version = 1;
    start.cmdline_paddr = layout::cmdline;
    start.rsdp_paddr = info.rsdp;
    start.memmap_paddr = pvh_memmap;
    start.memmap_entries = static_cast<std::uint32_t>(info.memory_map.size());
    if (info.initrd_addr) {
        HvmModlistEntry module { *info.initrd_addr, info.initrd_size, 0, 0 };
        STRATA_TRY(memory.write(pvh_modules, module));
        start.nr_modules = 1;
        start.modlist_paddr = pvh_modules;
    }
    STRATA_TRY(memory.write(pvh_start_info, start));
    return static_cast<std::uint32_t>(pvh_start_info);
}

Result<std::uint64_t> place_initrd(std::uint64_t ram_size, std::uint64_t above, std::uint64_t size, std::uint64_t max_addr)
{
    std::uint64_t top = low_ram_end(ram_size);
    if (max_addr < top)
        top = max_addr;
    above = (above + 0xfff) & ~std::uint64_t(0xfff);
    if (size > top || top - size < above)
        return make_error(ErrorKind::Usage, "the initrd (" + std::to_string(size >> 20) + " MiB) does not fit in guest memory above the kernel; give the VM more memory");
    return (top - size) & ~std::uint64_t(0xfff);
}

} // namespace strata
