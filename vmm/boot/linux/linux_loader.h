// Loading a Linux kernel into guest memory: the one entry point the Machine calls
// for `strata run --kernel`. It accepts a bzImage, a vmlinux ELF or a PVH ELF,
// writes the kernel, the command line, the initrd and the boot information
// (boot_params zero page with e820, or PVH hvm_start_info) and the entry tables,
// and returns the CPU state to start the boot vCPU with.
//
// A bzImage is decompressed on the host (vmm/boot/linux/decompress.h; cached by the
// image's SHA-256 unless the payload is lz4 or lzo, which inflate about as fast as
// a cache entry is read) and the vmlinux inside is entered through its 64-bit entry with
// the bzImage's own setup header in the zero page, so no guest time goes to
// decompression. An ELF with both a 64-bit Linux entry and a PVH note is entered
// through the 64-bit entry unless PVH is asked for; an ELF with only a PVH note
// (no "Linux" note), or a 32-bit one, is entered through PVH.
//
// Guest addresses (vmm/layout.h and vmm/boot/linux/x86_entry.h): zero page 0x1000 or
// hvm_start_info 0x2000, command line 0x3000, GDT 0x8000, page tables
// 0x9000-0xefff, kernel at its ELF physical addresses (>= 1 MiB), initrd
// page-aligned as high as fits below initrd_addr_max, the kernel and 4 GiB.
// Threading: call before the vCPUs run; nothing is shared.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"
#include "vmm/boot/linux/boot_params.h"
#include "vmm/boot/linux/decompress.h"
#include "vmm/boot/linux/x86_entry.h"
#include "vmm/machine_config.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace strata::linux_boot {

// MachineConfig's enum (vmm/machine_config.h): Auto (bzImage/vmlinux: the 64-bit
// entry; an ELF with only a PVH note: PVH), Linux64 (insist on the 64-bit boot
// protocol), Pvh (insist on the PVH note, also inside a bzImage's payload).
using BootProtocol = strata::BootProtocol;

enum class KernelFormat {
    BzImage,
    Elf,
};

struct LinuxLoadOptions {
    std::string cmdline;
    std::optional<std::span<std::byte const>> initrd;
    BootProtocol protocol { BootProtocol::Auto };
    // Ranges the VMM uses inside or outside RAM (ACPI tables: E820Type::Acpi, the
    // MMIO hole: Reserved); added to the e820 map on top of RAM. The EBDA/BIOS area
    // [0x9fc00, 0x100000) is always reserved.
    std::vector<E820Entry> reserved;
    std::uint64_t rsdp_addr { 0 };
    // Where decompressed bzImage payloads are cached; nullopt disables the cache.
    // default_kernel_cache_dir() (vmm/boot/linux/kernel_cache.h) gives the usual place.
    std::optional<std::filesystem::path> cache_dir;
    std::uint64_t max_kernel_size { kDefaultMaxKernelSize };
    // false: load a bzImage's protected-mode code as it is and enter its own
    // decompressor at +0x200 (needs XLF_KERNEL_64); used to compare boot times.
    bool decompress_on_host { true };
    // true: guest RAM has not been written since it was mapped (anonymous memory,
    // all zero), so the kernel's bss needs no zero-filling.
    bool memory_is_zero { false };
    // true: a kernel decompressed here is not written to the cache; the setup
    // returns it (cache_entry, decompressed) for the caller to store once the
    // guest runs. false: it is stored before load_linux returns.
    bool defer_cache_write { false };
};

struct LinuxBootSetup {
    EntryState entry;            // apply with apply_entry_state() to the boot vCPU
    KernelFormat format { KernelFormat::Elf };
    Compression compression { Compression::Uncompressed }; // of a bzImage's payload
    bool cache_hit { false };
    std::string cache_note;      // a cache problem worth a log line; empty if none
    // With defer_cache_write, a bzImage decompressed here that the cache lacks: the
    // caller stores `decompressed` as `cache_entry` (store_in_cache) once the guest
    // runs, so the boot does not wait for some 50 MB to be written and fsynced.
    std::optional<std::filesystem::path> cache_entry;
    std::vector<std::byte> decompressed;
    std::uint64_t kernel_start { 0 };
    std::uint64_t kernel_end { 0 };   // includes init_size's room for a bzImage
    std::uint64_t entry_point { 0 };
    std::uint64_t boot_info_addr { 0 }; // zero page (Long64) or hvm_start_info (PVH)
    std::uint64_t cmdline_addr { 0 };
    std::uint64_t initrd_addr { 0 };
    std::uint64_t initrd_size { 0 };
    std::vector<E820Entry> e820;
};

[[nodiscard]] Result<LinuxBootSetup> load_linux(GuestMemory const& mem, std::span<std::byte const> kernel_file,
    LinuxLoadOptions const& options);

// The same, reading the kernel and the initrd (if any; options.initrd is ignored)
// from files, with errors naming the file. An ELF kernel's segments and the initrd
// are read straight into guest RAM, with no copy in between.
[[nodiscard]] Result<LinuxBootSetup> load_linux_files(GuestMemory const& mem, std::filesystem::path const& kernel,
    std::optional<std::filesystem::path> const& initrd, LinuxLoadOptions options);

// Checks, without loading it, that `kernel` is a file the loader can boot (a
// bzImage it can enter, or an ELF kernel), so that records naming it are refused
// early (vms create, instance-templates create) rather than failing at start.
[[nodiscard]] Status check_kernel_file(std::filesystem::path const& kernel);

// Checks, without loading them, that `initrd` fits beside `kernel` in a VM of
// `ram_size` bytes: where the loader will put the kernel (its load address and,
// for a bzImage, the init_size its setup header asks for), and below the highest
// address the kernel accepts an initrd at. Records are then refused at create
// time, not at their first start. The loader itself stays the last word.
[[nodiscard]] Status check_initrd_fits(std::filesystem::path const& kernel, std::filesystem::path const& initrd,
    std::uint64_t ram_size, BootProtocol protocol);

// Picks a page-aligned address for an initrd: as high as fits in a usable e820
// range, with the whole initrd below `limit` (exclusive), at or above 1 MiB, and
// clear of [avoid_start, avoid_end).
[[nodiscard]] Result<std::uint64_t> place_initrd(std::span<E820Entry const> e820, std::uint64_t size,
    std::uint64_t limit, std::uint64_t avoid_start, std::uint64_t avoid_end);

char const* boot_protocol_name(BootProtocol p);
[[nodiscard]] Result<BootProtocol> parse_boot_protocol(std::string const& name);

} // namespace strata::linux_boot
