// The decompressed-kernel cache: a bzImage's payload, once decompressed on the
// host, is kept as a file named by the SHA-256 of the whole bzImage, so the next
// boot of the same kernel skips decompression. The cache lives in
// $STRATA_HOME/cache/kernels, or ~/.cache/strata/kernels when STRATA_HOME is
// unset. Entries are written to a temporary file and renamed into place, so a
// reader never sees half an entry; a cache that cannot be written only costs time.
// Threading: any thread; concurrent writers of the same entry race harmlessly
// (both rename identical content).
#pragma once

#include "base/result.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace strata::linux_boot {

// The default directory, or nullopt when neither STRATA_HOME nor HOME is set.
std::optional<std::filesystem::path> default_kernel_cache_dir();

std::string sha256_hex(std::span<std::byte const> data);

struct CachedKernel {
    std::vector<std::byte> vmlinux;
    bool hit { false };          // true: read from the cache, no decompression done
    std::string cache_note;      // why the cache was not used or not written, if so
};

// Returns the payload decompressed, from the cache when present. `image` is the
// whole bzImage (the key), `payload` the compressed bytes inside it.
[[nodiscard]] Result<CachedKernel> decompress_cached(std::span<std::byte const> image,
    std::span<std::byte const> payload, std::optional<std::filesystem::path> const& cache_dir,
    std::uint64_t max_output);

} // namespace strata::linux_boot
