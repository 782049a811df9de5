#include "vmm/boot/linux/pvh_boot.h"

#include "vmm/layout.h"

#include <vector>

namespace strata::linux_boot {

Result<std::uint64_t> write_pvh_boot_info(GuestMemory const& mem, PvhInputs const& in)
{
    constexpr std::uint64_t memmap_room = (layout::pvh_modules - layout::pvh_memmap) / sizeof(PvhMemmapEntry);
    if (in.e820.size() > memmap_room)
        return make_error(ErrorKind::Unsupported, "the memory map does not fit the PVH memmap area");
    for (std::size_t i = 0; i < in.e820.size(); ++i) {
        PvhMemmapEntry e { in.e820[i].addr, in.e820[i].size, in.e820[i].type, 0 };
        STRATA_TRY((mem.write(layout::pvh_memmap + i * sizeof(PvhMemmapEntry), e)));
    }
    PvhStartInfo si {};
    si.magic = kPvhMagic;
    si.version = 1;
    si.cmdline_paddr = in.cmdline_addr;
    si.rsdp_paddr = in.rsdp_addr;
    si.memmap_paddr = layout::pvh_memmap;
    si.memmap_entries = static_cast<std::uint32_t>(in.e820.size());
    if (in.initrd_size) {
        PvhModule m { in.initrd_addr, in.initrd_size, 0, 0 };
        STRATA_TRY((mem.write(layout::pvh_modules, m)));
        si.nr_modules = 1;
        si.modlist_paddr = layout::pvh_modules;
    }
    STRATA_TRY((mem.write(layout::pvh_start_info, si)));
    return layout::pvh_start_info;
}

} // namespace strata::linux_boot
