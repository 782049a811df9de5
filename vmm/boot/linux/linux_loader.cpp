#include "vmm/boot/linux/linux_loader.h"

#include "vmm/layout.h"
#include "vmm/boot/linux/bzimage.h"
#include "vmm/boot/linux/elf_kernel.h"
#include "vmm/boot/linux/kernel_cache.h"
#include "vmm/boot/linux/pvh_boot.h"

#include "base/fd.h"
#include "base/file.h"
#include "base/hex.h"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>

namespace strata::linux_boot {

namespace {

// A file the loader reads pieces of instead of holding it whole.
struct OpenFile {
    int fd { -1 };
    std::uint64_t size { 0 };
};

// What the kernel image turned into before anything is written.
struct Plan {
    std::optional<BzImage> bz;
    std::vector<std::byte> vmlinux; // the decompressed payload, when there is one
    std::optional<ElfKernel> elf;   // the ELF to load (vmlinux or the file itself)
    std::span<std::byte const> elf_bytes;
    std::optional<OpenFile> elf_file; // set instead of elf_bytes: the ELF is read from here
    Fd cached;                        // the decompressed-kernel cache entry, on a hit
};

// The initrd, either in memory or as an open file.
struct InitrdInput {
    std::span<std::byte const> bytes;
    std::optional<OpenFile> file;
    std::uint64_t size() const { return file ? file->size : bytes.size(); }
};

Result<OpenFile> open_regular(std::filesystem::path const& path, std::string const& what, std::uint64_t max_size, Fd& owner)
{
    STRATA_TRY(file, open_regular_file(path.string(), what, max_size));
    owner = std::move(file.fd);
    return OpenFile { owner.get(), file.size };
}

Result<LinuxBootSetup> load(GuestMemory const& mem, std::span<std::byte const> file, std::optional<OpenFile> elf_file,
    InitrdInput const& initrd, LinuxLoadOptions const& opt);

Result<std::vector<E820Entry>> memory_map(GuestMemory const& mem, LinuxLoadOptions const& opt)
{
    std::vector<MemoryRange> ram;
    for (auto const& r : mem.regions())
        ram.push_back({ r.gpa, r.size });
    std::vector<E820Entry> reserved;
    reserved.push_back({ layout::low_ram_end, layout::bios_end - layout::low_ram_end,
        static_cast<std::uint32_t>(E820Type::Reserved) });
    reserved.insert(reserved.end(), opt.reserved.begin(), opt.reserved.end());
    return build_e820(ram, reserved);
}

} // namespace

Result<std::uint64_t> place_initrd(std::span<E820Entry const> e820, std::uint64_t size, std::uint64_t limit,
    std::uint64_t avoid_start, std::uint64_t avoid_end)
{
    constexpr std::uint64_t page = 0x1000;
    std::optional<std::uint64_t> best;
    auto consider = [&](std::uint64_t lo, std::uint64_t hi) {
        // The highest page-aligned start in [lo, hi) that leaves room for size bytes.
        lo = std::max(lo, layout::high_memory);
        hi = std::min(hi, limit);
        if (hi <= lo || hi - lo < size)
            return;
        std::uint64_t at = (hi - size) & ~(page - 1);
        if (at >= lo && (!best || at > *best))
            best = at;
    };
    for (auto const& e : e820) {
        if (e.type != static_cast<std::uint32_t>(E820Type::Ram))
            continue;
        std::uint64_t lo = e.addr, hi = e.addr + e.size;
        // Split the range around the kernel.
        if (avoid_end > lo && avoid_start < hi) {
            consider(lo, std::max(lo, avoid_start));
            consider(std::min(hi, avoid_end), hi);
        } else {
            consider(lo, hi);
        }
    }
    if (!best)
        return make_error(ErrorKind::Usage, "the initrd (" + std::to_string(size >> 20)
                + " MiB) does not fit in guest memory below " + hex(limit) + " beside the kernel; give the VM more memory");
    return *best;
}

Status check_kernel_file(std::filesystem::path const& kernel)
{
    LinuxLoadOptions defaults;
    STRATA_TRY(file, read_file(kernel.string(), "kernel", defaults.max_kernel_size));
    auto checked = [&]() -> Status {
        if (looks_like_bzimage(file)) {
            STRATA_TRY(bz, parse_bzimage(file));
            if (detect_compression(bz.payload) == Compression::Unknown && !bz.has_64bit_entry())
                return make_error(ErrorKind::Unsupported, "the bzImage's payload format is unknown and it has no 64-bit entry (XLF_KERNEL_64)");
            return ok();
        }
        if (looks_like_elf(file)) {
            STRATA_TRY(elf, parse_elf_kernel(file));
            (void)elf;
            return ok();
        }
        return make_error(ErrorKind::BadInput, "the kernel is neither a bzImage nor an ELF file");
    }();
    if (!checked)
        return checked.error().context(kernel.string());
    return ok();
}

Status check_initrd_fits(std::filesystem::path const& kernel, std::filesystem::path const& initrd, std::uint64_t ram_size,
    BootProtocol protocol)
{
    LinuxLoadOptions defaults;
    STRATA_TRY(file, read_file(kernel.string(), "kernel", defaults.max_kernel_size));
    std::error_code ec;
    auto const initrd_size = std::filesystem::file_size(initrd, ec);
    if (ec)
        return make_error(ErrorKind::BadInput, "initrd '" + initrd.string() + "': " + ec.message());
    // Where load() puts the kernel and how high it lets the initrd go.
    std::uint64_t start = 0, end = 0, limit = kIdentityMapped;
    if (looks_like_bzimage(file)) {
        STRATA_TRY(bz, parse_bzimage(file));
        SetupHeader const& h = bz.hdr;
        start = h.version >= 0x020a && h.pref_address ? h.pref_address : 0x1000000;
        end = start + std::max<std::uint64_t>(h.init_size, bz.protected_mode.size());
        limit = std::min<std::uint64_t>(limit, std::uint64_t(h.initrd_addr_max) + 1);
    } else if (looks_like_elf(file)) {
        STRATA_TRY(elf, parse_elf_kernel(file));
        start = elf.lowest;
        end = elf.highest;
        // The 64-bit entry's zero page advertises 2 GiB as initrd_addr_max.
        if (protocol == BootProtocol::Linux64)
            limit = 0x80000000;
    } else {
        return make_error(ErrorKind::BadInput, "the kernel is neither a bzImage nor an ELF file");
    }
    // RAM from 1 MiB up to the 32-bit MMIO hole is where an initrd can go
    // (layout.h); the kernel must fit there too.
    std::uint64_t const ram_end = std::min(ram_size, layout::mmio_hole_start);
    if (end > ram_end)
        return make_error(ErrorKind::Usage, "the kernel needs guest RAM up to " + hex(end) + ", more than the VM's "
                + std::to_string(ram_size >> 20) + " MiB; give it more memory");
    E820Entry const ram { layout::high_memory, ram_end - layout::high_memory, static_cast<std::uint32_t>(E820Type::Ram) };
    STRATA_TRY(at, (place_initrd(std::span(&ram, 1), initrd_size, limit, start, end)));
    (void)at;
    return ok();
}

Result<LinuxBootSetup> load_linux_files(GuestMemory const& mem, std::filesystem::path const& kernel,
    std::optional<std::filesystem::path> const& initrd, LinuxLoadOptions options)
{
    // An ELF kernel is read piece by piece, each segment straight into guest RAM;
    // a bzImage (some 10 MB, hashed whole for the cache and decompressed) is read
    // whole. So is the initrd, straight to where it goes.
    Fd kernel_fd;
    STRATA_TRY(kernel_file, open_regular(kernel, "kernel", options.max_kernel_size, kernel_fd));
    std::array<std::byte, SELFMAG> magic {};
    bool elf = kernel_file.size >= magic.size() && pread_all(kernel_file.fd, magic, 0) && looks_like_elf(magic);
    std::vector<std::byte> kernel_bytes;
    if (!elf) {
        kernel_bytes.resize(static_cast<std::size_t>(kernel_file.size));
        if (auto r = pread_all(kernel_file.fd, kernel_bytes, 0); !r)
            return r.error().context("kernel '" + kernel.string() + "'");
    }
    Fd initrd_fd;
    InitrdInput in;
    options.initrd.reset();
    if (initrd) {
        STRATA_TRY(f, open_regular(*initrd, "initrd", std::uint64_t(4) << 30, initrd_fd));
        in.file = f;
    }
    auto r = elf ? load(mem, {}, kernel_file, in, options) : load(mem, kernel_bytes, std::nullopt, in, options);
    if (!r)
        return r.error().context(kernel.string());
    return r;
}

char const* boot_protocol_name(BootProtocol p)
{
    switch (p) {
    case BootProtocol::Auto: return "auto";
    case BootProtocol::Linux64: return "linux";
    case BootProtocol::Pvh: return "pvh";
    }
    return "auto";
}

Result<BootProtocol> parse_boot_protocol(std::string const& name)
{
    if (name == "auto")
        return BootProtocol::Auto;
    if (name == "linux" || name == "linux64" || name == "64")
        return BootProtocol::Linux64;
    if (name == "pvh")
        return BootProtocol::Pvh;
    return make_error(ErrorKind::Usage, "unknown boot protocol '" + name + "' (auto, linux or pvh)");
}

Result<LinuxBootSetup> load_linux(GuestMemory const& mem, std::span<std::byte const> file, LinuxLoadOptions const& opt)
{
    InitrdInput in;
    if (opt.initrd)
        in.bytes = *opt.initrd;
    return load(mem, file, std::nullopt, in, opt);
}

namespace {

Result<LinuxBootSetup> load(GuestMemory const& mem, std::span<std::byte const> file, std::optional<OpenFile> elf_file,
    InitrdInput const& initrd, LinuxLoadOptions const& opt)
{
    LinuxBootSetup out;
    Plan plan;

    // 1. Recognise the image and find the ELF to load, decompressing if needed.
    if (elf_file) {
        STRATA_TRY(elf, parse_elf_kernel_file(elf_file->fd, elf_file->size));
        plan.elf = std::move(elf);
        plan.elf_file = elf_file;
    } else if (looks_like_bzimage(file)) {
        STRATA_TRY(bz, parse_bzimage(file));
        plan.bz = bz;
        out.format = KernelFormat::BzImage;
        out.compression = detect_compression(bz.payload);
        bool host = opt.decompress_on_host && !bz.payload.empty() && out.compression != Compression::Unknown;
        if (opt.protocol == BootProtocol::Pvh && !host)
            return make_error(ErrorKind::Usage, "PVH boot of a bzImage needs its payload decompressed on the host");
        if (host) {
            if (out.compression == Compression::Uncompressed) {
                plan.elf_bytes = bz.payload;
            } else {
                // lz4 and lzo inflate about as fast as the cache entry (four times
                // the bzImage's bytes) can be read back: inside the emulated KVM
                // machine decompressing Debian's lz4 kernel took 1.4 s against 2.0 s
                // for reading its entry, besides 0.5 s of hashing the bzImage for
                // the key. Those are decompressed every time; the slow formats
                // (gzip, bzip2, lzma, xz, zstd) are cached.
                bool fast = out.compression == Compression::Lz4 || out.compression == Compression::Lzo;
                auto cache_dir = fast ? std::nullopt : opt.cache_dir;
                STRATA_TRY(cached, (decompress_cached(file, bz.payload, cache_dir, opt.max_kernel_size)));
                out.cache_hit = cached.hit;
                out.cache_note = cached.cache_note;
                if (cached.hit) {
                    plan.elf_file = OpenFile { cached.file.get(), cached.file_size };
                    plan.cached = std::move(cached.file);
                } else {
                    plan.vmlinux = std::move(cached.vmlinux);
                    plan.elf_bytes = plan.vmlinux;
                    out.cache_entry = cached.entry;
                }
            }
            auto elf = plan.elf_file ? parse_elf_kernel_file(plan.elf_file->fd, plan.elf_file->size)
                                     : parse_elf_kernel(plan.elf_bytes);
            if (!elf)
                return elf.error().context(std::string("the bzImage's ") + compression_name(out.compression) + " payload");
            plan.elf = std::move(elf.value());
        } else if (!bz.has_64bit_entry()) {
            return make_error(ErrorKind::Unsupported, "the bzImage's payload format is unknown and it has no 64-bit entry (XLF_KERNEL_64)");
        }
    } else if (looks_like_elf(file)) {
        STRATA_TRY(elf, parse_elf_kernel(file));
        plan.elf = std::move(elf);
        plan.elf_bytes = file;
    } else {
        return make_error(ErrorKind::BadInput, "the kernel is neither a bzImage nor an ELF file");
    }

    // 2. Choose the entry.
    EntryMode mode = EntryMode::Long64;
    if (plan.elf) {
        ElfKernel const& k = *plan.elf;
        bool has64 = k.is_64bit && k.entry_paddr.has_value();
        bool pvh = opt.protocol == BootProtocol::Pvh
            || (opt.protocol == BootProtocol::Auto && !plan.bz && k.pvh_entry && (!k.has_linux_note || !has64));
        if (pvh) {
            if (!k.pvh_entry)
                return make_error(ErrorKind::Usage, "the kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
            if (*k.pvh_entry > 0xffffffffu)
                return make_error(ErrorKind::BadInput, "the PVH entry lies above 4 GiB");
            mode = EntryMode::Protected32;
            out.entry_point = *k.pvh_entry;
        } else {
            if (!has64)
                return make_error(ErrorKind::Usage, "the ELF kernel has no 64-bit entry inside its segments; try --boot-protocol pvh");
            out.entry_point = *k.entry_paddr;
        }
        out.kernel_start = k.lowest;
        out.kernel_end = k.highest;
        if (plan.bz && plan.bz->hdr.init_size)
            out.kernel_end = std::max(out.kernel_end, k.lowest + plan.bz->hdr.init_size);
    } else {
        // In-guest decompression: the protected-mode code runs from an aligned
        // address (pref_address from protocol 2.10) and needs init_size bytes there.
        SetupHeader const& h = plan.bz->hdr;
        std::uint64_t load = h.version >= 0x020a && h.pref_address ? h.pref_address : 0x1000000;
        out.kernel_start = load;
        out.kernel_end = load + std::max<std::uint64_t>(h.init_size, plan.bz->protected_mode.size());
        out.entry_point = load + 0x200;
    }
    if (out.kernel_start < layout::high_memory)
        return make_error(ErrorKind::BadInput, "the kernel loads at " + hex(out.kernel_start) + ", below 1 MiB where strata keeps boot information");
    if (out.kernel_end > kIdentityMapped && mode == EntryMode::Long64)
        return make_error(ErrorKind::Unsupported, "the kernel extends past 4 GiB, beyond the boot identity map");
    if (!mem.slice(out.kernel_start, out.kernel_end - out.kernel_start))
        return make_error(ErrorKind::Usage, "the kernel needs guest RAM at [" + hex(out.kernel_start) + ", " + hex(out.kernel_end) + "); give the VM more memory");

    // 3. Memory map, kernel, command line, initrd.
    STRATA_TRY(e820, memory_map(mem, opt));
    out.e820 = std::move(e820);
    if (plan.elf_file) {
        STRATA_TRY((load_elf_kernel_file(*plan.elf, plan.elf_file->fd, plan.elf_file->size, mem, opt.memory_is_zero)));
    } else if (plan.elf) {
        STRATA_TRY((load_elf_kernel(*plan.elf, plan.elf_bytes, mem, opt.memory_is_zero)));
    } else {
        STRATA_TRY((mem.write_bytes(out.kernel_start, plan.bz->protected_mode)));
    }

    std::uint64_t cmdline_max = layout::cmdline_max - 1;
    if (plan.bz && mode == EntryMode::Long64)
        cmdline_max = std::min<std::uint64_t>(cmdline_max, plan.bz->hdr.cmdline_size);
    if (opt.cmdline.size() > cmdline_max)
        return make_error(ErrorKind::Usage, "the command line is " + std::to_string(opt.cmdline.size())
                + " bytes; this kernel takes at most " + std::to_string(cmdline_max));
    out.cmdline_addr = layout::cmdline;
    std::vector<std::byte> cmd(opt.cmdline.size() + 1, std::byte { 0 });
    std::memcpy(cmd.data(), opt.cmdline.data(), opt.cmdline.size());
    STRATA_TRY((mem.write_bytes(out.cmdline_addr, cmd)));

    if (initrd.size() > 0) {
        std::uint64_t limit = kIdentityMapped;
        if (plan.bz)
            limit = std::min<std::uint64_t>(limit, std::uint64_t(plan.bz->hdr.initrd_addr_max) + 1);
        else if (mode == EntryMode::Long64)
            limit = 0x80000000; // what the ELF zero page advertises as initrd_addr_max
        STRATA_TRY(at, (place_initrd(out.e820, initrd.size(), limit, out.kernel_start, out.kernel_end)));
        if (initrd.file) {
            STRATA_TRY(dst, (mem.slice(at, initrd.size())));
            if (auto r = pread_all(initrd.file->fd, dst, 0); !r)
                return r.error().context("initrd");
        } else {
            STRATA_TRY((mem.write_bytes(at, initrd.bytes)));
        }
        out.initrd_addr = at;
        out.initrd_size = initrd.size();
    }

    // 4. Boot information and entry state.
    if (mode == EntryMode::Long64) {
        ZeroPageInputs zp;
        if (plan.bz) {
            zp.image_header = &plan.bz->hdr;
            zp.image_header_len = plan.bz->header_len;
        }
        zp.cmdline_addr = out.cmdline_addr;
        zp.initrd_addr = out.initrd_addr;
        zp.initrd_size = out.initrd_size;
        zp.rsdp_addr = opt.rsdp_addr;
        zp.e820 = out.e820;
        STRATA_TRY(bp, build_zero_page(zp));
        STRATA_TRY((mem.write(layout::zero_page, bp)));
        out.boot_info_addr = layout::zero_page;
    } else {
        PvhInputs pi;
        pi.cmdline_addr = out.cmdline_addr;
        pi.initrd_addr = out.initrd_addr;
        pi.initrd_size = out.initrd_size;
        pi.rsdp_addr = opt.rsdp_addr;
        pi.e820 = out.e820;
        STRATA_TRY(si, (write_pvh_boot_info(mem, pi)));
        out.boot_info_addr = si;
    }
    STRATA_TRY(entry, (prepare_entry(mem, mode, out.entry_point, out.boot_info_addr)));
    out.entry = entry;
    if (out.cache_entry && opt.defer_cache_write) {
        out.decompressed = std::move(plan.vmlinux);
    } else if (out.cache_entry) {
        if (auto s = store_in_cache(*out.cache_entry, plan.vmlinux); !s)
            out.cache_note = "could not cache the decompressed kernel: " + s.error().message;
        out.cache_entry.reset();
    }
    return out;
}

} // namespace

} // namespace strata::linux_boot
