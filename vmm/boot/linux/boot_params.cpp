#include "vmm/boot/linux/boot_params.h"

#include <algorithm>
#include <cstring>

namespace strata::linux_boot {

namespace {

struct Typed {
    std::uint64_t begin;
    std::uint64_t end; // exclusive
    std::uint32_t type;
    std::size_t rank;  // later ranks win where ranges overlap
};

} // namespace

Result<std::vector<E820Entry>> build_e820(std::span<MemoryRange const> ram, std::span<E820Entry const> reserved)
{
    std::vector<Typed> ranges;
    auto add = [&](std::uint64_t addr, std::uint64_t size, std::uint32_t type) -> Status {
        if (size == 0)
            return ok();
        if (addr + size < addr)
            return make_error(ErrorKind::BadInput, "e820 range wraps around the address space");
        ranges.push_back(Typed { addr, addr + size, type, ranges.size() });
        return ok();
    };
    for (auto const& r : ram)
        STRATA_TRY((add(r.addr, r.size, static_cast<std::uint32_t>(E820Type::Ram))));
    for (auto const& r : reserved)
        STRATA_TRY((add(r.addr, r.size, r.type)));

    // Sweep the elementary intervals between all boundaries; each takes the type of
    // the last-added range covering it, so reservations carve holes out of RAM.
    std::vector<std::uint64_t> points;
    for (auto const& r : ranges) {
        points.push_back(r.begin);
        points.push_back(r.end);
    }
    std::sort(points.begin(), points.end());
    points.erase(std::unique(points.begin(), points.end()), points.end());

    std::vector<E820Entry> out;
    for (std::size_t i = 0; i + 1 < points.size(); ++i) {
        std::uint64_t lo = points[i];
        std::uint64_t hi = points[i + 1];
        Typed const* best = nullptr;
        for (auto const& r : ranges)
            if (r.begin <= lo && hi <= r.end && (!best || r.rank > best->rank))
                best = &r;
        if (!best)
            continue;
        if (!out.empty() && out.back().type == best->type && out.back().addr + out.back().size == lo)
            out.back().size += hi - lo;
        else
            out.push_back(E820Entry { lo, hi - lo, best->type });
    }
    if (out.size() > std::size(BootParams {}.e820_table))
        return make_error(ErrorKind::Unsupported, "the memory map needs more than 128 e820 entries");
    return out;
}

Result<BootParams> build_zero_page(ZeroPageInputs const& in)
{
    BootParams bp;
    std::memset(&bp, 0, sizeof(bp));

    if (in.image_header) {
        // boot.rst: the loader copies the header from the image, which runs from
        // 0x1f1 to 0x202 plus the byte at 0x201 (the jump's displacement).
        std::memcpy(&bp.hdr, in.image_header, std::min(in.image_header_len, sizeof(SetupHeader)));
    } else {
        // An ELF vmlinux has no setup header; make up the fields the kernel reads.
        bp.hdr.boot_flag = kBootFlag;
        bp.hdr.header = kHdrS;
        bp.hdr.version = 0x020f;
        bp.hdr.kernel_alignment = 0x1000000;
        bp.hdr.cmdline_size = 2047;
        bp.hdr.initrd_addr_max = 0x7fffffff;
    }

    bp.hdr.type_of_loader = kLoaderUndefined;
    // The kernel proper runs from its load address (LOADED_HIGH) and may use the
    // heap up to heap_end_ptr; KASLR is the decompressor's report, and strata did
    // not randomize, so it is cleared.
    bp.hdr.loadflags = static_cast<std::uint8_t>((bp.hdr.loadflags | kLoadedHigh | kCanUseHeap) & ~kKaslrFlag);
    bp.hdr.heap_end_ptr = 0xfe00;
    bp.hdr.vid_mode = 0xffff; // "normal" text mode
    bp.hdr.hardware_subarch = 0;
    bp.hdr.hardware_subarch_data = 0;
    bp.hdr.setup_data = 0;

    bp.hdr.cmd_line_ptr = static_cast<std::uint32_t>(in.cmdline_addr);
    bp.ext_cmd_line_ptr = static_cast<std::uint32_t>(in.cmdline_addr >> 32);
    bp.hdr.ramdisk_image = static_cast<std::uint32_t>(in.initrd_addr);
    bp.ext_ramdisk_image = static_cast<std::uint32_t>(in.initrd_addr >> 32);
    bp.hdr.ramdisk_size = static_cast<std::uint32_t>(in.initrd_size);
    bp.ext_ramdisk_size = static_cast<std::uint32_t>(in.initrd_size >> 32);
    bp.acpi_rsdp_addr = in.rsdp_addr;

    if (in.e820.size() > std::size(bp.e820_table))
        return make_error(ErrorKind::Unsupported, "the memory map needs more than 128 e820 entries");
    for (std::size_t i = 0; i < in.e820.size(); ++i)
        bp.e820_table[i] = in.e820[i];
    bp.e820_entries = static_cast<std::uint8_t>(in.e820.size());
    return bp;
}

} // namespace strata::linux_boot
