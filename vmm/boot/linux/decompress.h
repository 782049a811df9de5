// Host-side decompression of a bzImage payload, in every format the kernel's own
// decompressor knows (lib/decompress.c): gzip, bzip2, lzma, xz, lzo (lzop file
// format), lz4 (legacy frame) and zstd, using Debian's libraries. The format is
// detected from the payload's magic. Output is capped: a payload that would
// inflate past the cap is refused, so a decompression bomb costs at most the cap.
// Threading: pure functions; each call owns its decoder state. An lz4 payload of
// several chunks is inflated on up to hardware_concurrency() threads of the
// call's own, joined before it returns.
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace strata::linux_boot {

enum class Compression {
    Unknown,
    Uncompressed, // an ELF image as it is (probe kernels)
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Lzo,
    Lz4,
    Zstd,
};

Compression detect_compression(std::span<std::byte const> data);
char const* compression_name(Compression c);

// The default cap on a decompressed kernel: Debian's kernels are 40-70 MiB.
inline constexpr std::uint64_t kDefaultMaxKernelSize = 512ull << 20;

// Decompresses one stream; bytes after its end (the kernel build appends the
// uncompressed size as 4 bytes) are ignored. Uncompressed input is copied.
[[nodiscard]] Result<std::vector<std::byte>> decompress(std::span<std::byte const> data,
    std::uint64_t max_output = kDefaultMaxKernelSize);

} // namespace strata::linux_boot
