// The x86 Linux boot protocol's data structures (Linux Documentation/arch/x86/
// boot.rst and zero-page.rst): the setup header that sits at offset 0x1f1 of a
// bzImage and of the zero page, the zero page (struct boot_params) itself, and
// the e820 entries it carries. Layouts are byte-exact; every offset that the
// spec names is checked by a static_assert below so a typo cannot slip through.
// This header also declares the builder that fills a zero page for a loaded
// kernel.
// Threading: plain data and pure functions.
#pragma once

#include "base/result.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace strata::linux_boot {

// boot.rst "The Real-Mode Kernel Header"; offsets are from the start of the image.
#pragma pack(push, 1)
struct SetupHeader {
    std::uint8_t setup_sects;          // 0x1f1 r   sectors of real-mode setup after the boot sector
    std::uint16_t root_flags;          // 0x1f2 rw  root read-only (obsolete)
    std::uint32_t syssize;             // 0x1f4 r   protected-mode size in 16-byte paragraphs
    std::uint16_t ram_size;            // 0x1f8 -   obsolete
    std::uint16_t vid_mode;            // 0x1fa w   video mode
    std::uint16_t root_dev;            // 0x1fc w   default root device
    std::uint16_t boot_flag;           // 0x1fe r   0xAA55
    std::uint16_t jump;                // 0x200 r   jump instruction; its 2nd byte gives the header's end
    std::uint32_t header;              // 0x202 r   "HdrS"
    std::uint16_t version;             // 0x206 r   boot protocol version
    std::uint32_t realmode_swtch;      // 0x208 w   real-mode hook
    std::uint16_t start_sys_seg;       // 0x20c -   obsolete
    std::uint16_t kernel_version;      // 0x20e r   pointer to a version string
    std::uint8_t type_of_loader;       // 0x210 w   boot loader id (0xff: undefined)
    std::uint8_t loadflags;            // 0x211 rw  LOADED_HIGH, KASLR, QUIET, KEEP_SEGMENTS, CAN_USE_HEAP
    std::uint16_t setup_move_size;     // 0x212 w   obsolete
    std::uint32_t code32_start;        // 0x214 w   32-bit entry (load address of protected-mode code)
    std::uint32_t ramdisk_image;       // 0x218 w   initrd address, low 32 bits
    std::uint32_t ramdisk_size;        // 0x21c w   initrd size, low 32 bits
    std::uint32_t bootsect_kludge;     // 0x220 -   obsolete
    std::uint16_t heap_end_ptr;        // 0x224 w   end of setup heap/stack, minus 0x200
    std::uint8_t ext_loader_ver;       // 0x226 w   loader version extension
    std::uint8_t ext_loader_type;      // 0x227 w   loader type extension
    std::uint32_t cmd_line_ptr;        // 0x228 w   command line address, low 32 bits
    std::uint32_t initrd_addr_max;     // 0x22c r   highest address the initrd may end at
    std::uint32_t kernel_alignment;    // 0x230 rw  required physical alignment
    std::uint8_t relocatable_kernel;   // 0x234 r   kernel may load at any aligned address
    std::uint8_t min_alignment;        // 0x235 r   log2 of the minimum alignment
    std::uint16_t xloadflags;          // 0x236 r   XLF_* flags
    std::uint32_t cmdline_size;        // 0x238 r   maximum command line length, without the NUL
    std::uint32_t hardware_subarch;    // 0x23c w   0: normal PC
    std::uint64_t hardware_subarch_data; // 0x240 w
    std::uint32_t payload_offset;      // 0x248 r   compressed payload, from the protected-mode start
    std::uint32_t payload_length;      // 0x24c r
    std::uint64_t setup_data;          // 0x250 w   linked list of setup_data
    std::uint64_t pref_address;        // 0x258 r   preferred load address
    std::uint32_t init_size;           // 0x260 r   linear memory the kernel needs from its load address
    std::uint32_t handover_offset;     // 0x264 r   EFI handover entry
    std::uint32_t kernel_info_offset;  // 0x268 r   kernel_info, from the protected-mode start
};

struct E820Entry {
    std::uint64_t addr;
    std::uint64_t size;
    std::uint32_t type;
};

// boot.rst / zero-page.rst "The zero page"; only the fields a VMM sets are named,
// the rest are padding that stays zero.
struct BootParams {
    std::uint8_t screen_info[0x40];    // 0x000
    std::uint8_t apm_bios_info[0x14];  // 0x040
    std::uint8_t pad2[4];              // 0x054
    std::uint64_t tboot_addr;          // 0x058
    std::uint8_t ist_info[0x10];       // 0x060
    std::uint64_t acpi_rsdp_addr;      // 0x070
    std::uint8_t pad3[8];              // 0x078
    std::uint8_t hd0_info[16];         // 0x080
    std::uint8_t hd1_info[16];         // 0x090
    std::uint8_t sys_desc_table[16];   // 0x0a0
    std::uint8_t olpc_ofw_header[16];  // 0x0b0
    std::uint32_t ext_ramdisk_image;   // 0x0c0 initrd address, high 32 bits
    std::uint32_t ext_ramdisk_size;    // 0x0c4 initrd size, high 32 bits
    std::uint32_t ext_cmd_line_ptr;    // 0x0c8 command line address, high 32 bits
    std::uint8_t pad4[112];            // 0x0cc
    std::uint32_t cc_blob_address;     // 0x13c
    std::uint8_t edid_info[0x80];      // 0x140
    std::uint8_t efi_info[0x20];       // 0x1c0
    std::uint32_t alt_mem_k;           // 0x1e0
    std::uint32_t scratch;             // 0x1e4
    std::uint8_t e820_entries;         // 0x1e8 number of entries in e820_table
    std::uint8_t eddbuf_entries;       // 0x1e9
    std::uint8_t edd_mbr_sig_buf_entries; // 0x1ea
    std::uint8_t kbd_status;           // 0x1eb
    std::uint8_t secure_boot;          // 0x1ec
    std::uint8_t pad5[2];              // 0x1ed
    std::uint8_t sentinel;             // 0x1ef must stay 0, or the kernel zeroes fields it suspects stale
    std::uint8_t pad6[1];              // 0x1f0
    SetupHeader hdr;                   // 0x1f1
    std::uint8_t pad7[0x290 - 0x1f1 - sizeof(SetupHeader)];
    std::uint32_t edd_mbr_sig_buffer[16]; // 0x290
    E820Entry e820_table[128];         // 0x2d0
    std::uint8_t pad8[48];             // 0xcd0
    std::uint8_t eddbuf[6 * 82];       // 0xd00
    std::uint8_t pad9[276];            // 0xeec
};
#pragma pack(pop)

static_assert(sizeof(E820Entry) == 20);
static_assert(sizeof(SetupHeader) == 0x26c - 0x1f1);
static_assert(offsetof(SetupHeader, boot_flag) == 0x1fe - 0x1f1);
static_assert(offsetof(SetupHeader, header) == 0x202 - 0x1f1);
static_assert(offsetof(SetupHeader, type_of_loader) == 0x210 - 0x1f1);
static_assert(offsetof(SetupHeader, code32_start) == 0x214 - 0x1f1);
static_assert(offsetof(SetupHeader, heap_end_ptr) == 0x224 - 0x1f1);
static_assert(offsetof(SetupHeader, cmd_line_ptr) == 0x228 - 0x1f1);
static_assert(offsetof(SetupHeader, xloadflags) == 0x236 - 0x1f1);
static_assert(offsetof(SetupHeader, payload_offset) == 0x248 - 0x1f1);
static_assert(offsetof(SetupHeader, pref_address) == 0x258 - 0x1f1);
static_assert(offsetof(SetupHeader, kernel_info_offset) == 0x268 - 0x1f1);
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, sentinel) == 0x1ef);
static_assert(offsetof(BootParams, hdr) == 0x1f1);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);
static_assert(offsetof(BootParams, eddbuf) == 0xd00);

inline constexpr std::uint16_t kBootFlag = 0xAA55;
inline constexpr std::uint32_t kHdrS = 0x53726448; // "HdrS" read little-endian
inline constexpr std::size_t kSetupHeaderOffset = 0x1f1;

// loadflags
inline constexpr std::uint8_t kLoadedHigh = 0x01;
inline constexpr std::uint8_t kKaslrFlag = 0x02;
inline constexpr std::uint8_t kKeepSegments = 0x40;
inline constexpr std::uint8_t kCanUseHeap = 0x80;
// xloadflags
inline constexpr std::uint16_t kXlfKernel64 = 0x01;
inline constexpr std::uint16_t kXlfCanBeLoadedAbove4G = 0x02;

// e820 types (ACPI "Address Range Types").
enum class E820Type : std::uint32_t {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
    Unusable = 5,
};

// A boot loader id of 0xff means "undefined loader" (boot.rst, type_of_loader).
inline constexpr std::uint8_t kLoaderUndefined = 0xff;

// Builds an e820 map: every RAM range becomes type Ram, then each reserved range
// (which may lie inside or outside RAM) is carved out with its own type. The
// result is sorted, non-overlapping, with adjacent same-type entries merged, and
// fails when it would exceed the zero page's 128 entries.
struct MemoryRange {
    std::uint64_t addr;
    std::uint64_t size;
};
[[nodiscard]] Result<std::vector<E820Entry>> build_e820(std::span<MemoryRange const> ram,
    std::span<E820Entry const> reserved);

// What the builder needs to know to fill a zero page.
struct ZeroPageInputs {
    SetupHeader const* image_header { nullptr }; // from a bzImage, or null for an ELF vmlinux
    std::size_t image_header_len { 0 };          // bytes of the header present in the image
    std::uint64_t cmdline_addr { 0 };
    std::uint64_t initrd_addr { 0 };
    std::uint64_t initrd_size { 0 };
    std::uint64_t rsdp_addr { 0 };
    std::span<E820Entry const> e820;
};

// Fills a zero page as boot.rst's 64-bit boot protocol asks: the image's setup
// header copied (or, for an ELF vmlinux, a minimal one made up), then the fields
// a boot loader writes.
[[nodiscard]] Result<BootParams> build_zero_page(ZeroPageInputs const& in);

} // namespace strata::linux_boot
