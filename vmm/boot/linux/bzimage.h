// Parsing of a bzImage file (boot.rst "The Real-Mode Kernel Header", "Loading the
// rest of the kernel"): the setup header, the real-mode setup code, the
// protected-mode part and, inside it, the compressed payload (vmlinux) that
// strata decompresses on the host. Every offset and length read from the file is
// checked against the file's size; the spans point into the caller's buffer.
// Threading: pure function.
#pragma once

#include "base/result.h"
#include "vmm/boot/linux/boot_params.h"

#include <cstddef>
#include <span>

namespace strata::linux_boot {

// The oldest protocol strata loads: 2.06 added cmdline_size; payload_offset (and
// with it host-side decompression) needs 2.08, and the in-guest 64-bit entry at
// +0x200 needs XLF_KERNEL_64 (2.12).
inline constexpr std::uint16_t kMinProtocol = 0x0206;

struct BzImage {
    SetupHeader hdr {};
    std::size_t header_len { 0 };                 // bytes of hdr present in the image
    std::span<std::byte const> setup;             // boot sector + real-mode setup
    std::span<std::byte const> protected_mode;    // what a 32/64-bit entry loads at code32_start
    std::span<std::byte const> payload;           // compressed vmlinux; empty before 2.08

    bool has_64bit_entry() const { return hdr.version >= 0x020c && (hdr.xloadflags & kXlfKernel64); }
    bool relocatable() const { return hdr.version >= 0x0205 && hdr.relocatable_kernel != 0; }
};

// True when the file starts like a bzImage (boot flag and "HdrS" in place), so a
// caller can choose between this parser and the ELF one.
bool looks_like_bzimage(std::span<std::byte const> file);

[[nodiscard]] Result<BzImage> parse_bzimage(std::span<std::byte const> file);

} // namespace strata::linux_boot
