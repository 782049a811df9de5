// Decompression of one qcow2 compressed cluster: raw deflate (QEMU's zlib type,
// window bits 12, no zlib header) or a zstd frame. The input is untrusted: it may
// be garbage, too short, or decompress to the wrong length; each of these is a
// BadInput error. The output is exactly one cluster; trailing input (QEMU pads the
// compressed data to a sector) is ignored.
// Threading: pure functions; each call keeps its own decompression context.
#pragma once

#include "base/result.h"
#include "imaging/qcow2/qcow2_format.h"

#include <cstddef>
#include <span>

namespace strata::qcow2 {

[[nodiscard]] Status decompress_cluster(CompressionType type, std::span<std::byte const> in, std::span<std::byte> out);

} // namespace strata::qcow2
