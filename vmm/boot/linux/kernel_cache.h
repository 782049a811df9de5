// The decompressed-kernel cache: a bzImage's payload, once decompressed on the
// host, is kept as a file named by the SHA-256 of the whole bzImage, so the next
// boot of the same kernel skips decompression. The cache lives in
// $STRATA_HOME/cache/kernels, or ~/.cache/strata/kernels when STRATA_HOME is
// unset. Entries are written to a temporary file and renamed into place, so a
// reader never sees half an entry; a cache that cannot be written only costs time.
// Threading: any thread; concurrent writers of the same entry race harmlessly
// (both rename identical content).
#pragma once

#include "base/fd.h"
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
    // A miss: the payload decompressed here. A hit: empty, and `file` is the cache
    // entry open for reading (file_size bytes), so the loader reads the segments
    // straight into guest RAM instead of through a 50 MB buffer.
    std::vector<std::byte> vmlinux;
    Fd file;
    std::uint64_t file_size { 0 };
    bool hit { false };          // true: found in the cache, no decompression done
    std::string cache_note;      // why the cache was not used, if so
    // A miss with a cache directory: where the entry belongs. The caller writes it
    // with store_in_cache once the guest runs, off the boot's critical path.
    std::optional<std::filesystem::path> entry;
};

// Returns the payload decompressed, or the cache entry when present. `image` is
// the whole bzImage (the key), `payload` the compressed bytes inside it.
[[nodiscard]] Result<CachedKernel> decompress_cached(std::span<std::byte const> image,
    std::span<std::byte const> payload, std::optional<std::filesystem::path> const& cache_dir,
    std::uint64_t max_output);

// Writes a decompressed kernel as the cache entry `entry` (atomically: a temporary
// file fsynced and renamed). A failure is returned as a note; it only costs time.
[[nodiscard]] Status store_in_cache(std::filesystem::path const& entry, std::span<std::byte const> vmlinux);

} // namespace strata::linux_boot
