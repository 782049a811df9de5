// qcow2 on-disk structures as QEMU's docs/interop/qcow2.txt defines them, and the
// pure parser of a qcow2 header (with its extensions and backing file name).
// The parser treats its input as hostile: every field is range-checked against
// the file size and against strata's caps before anything is allocated, so a
// fuzzer can drive it directly (tests/fuzz/fuzz_qcow2.cpp).
//
// What strata does not implement (refused with Unsupported): encryption, external
// data files, unknown incompatible feature bits. Internal snapshots are ignored
// (only the active image is read), as are bitmaps.
//
// Threading: pure functions over caller-owned bytes.
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace strata::qcow2 {

inline constexpr std::uint32_t kMagic = 0x514649fbU; // "QFI\xfb"

// Incompatible feature bits (header offset 72, v3 only).
inline constexpr std::uint64_t kIncompatDirty = 1ULL << 0;
inline constexpr std::uint64_t kIncompatCorrupt = 1ULL << 1;
inline constexpr std::uint64_t kIncompatDataFile = 1ULL << 2;
inline constexpr std::uint64_t kIncompatCompression = 1ULL << 3;
inline constexpr std::uint64_t kIncompatExtendedL2 = 1ULL << 4;

// Header extension types.
inline constexpr std::uint32_t kExtEnd = 0;
inline constexpr std::uint32_t kExtBackingFormat = 0xe2792acaU;
inline constexpr std::uint32_t kExtFeatureTable = 0x6803f857U;
inline constexpr std::uint32_t kExtDataFile = 0x44415441U;

// L1/L2 entry bits.
inline constexpr std::uint64_t kCopied = 1ULL << 63;
inline constexpr std::uint64_t kCompressed = 1ULL << 62;
inline constexpr std::uint64_t kZeroFlag = 1ULL; // standard L2 entry, v3
inline constexpr std::uint64_t kOffsetMask = 0x00fffffffffffe00ULL; // bits 9-55

// strata's caps on what a hostile header may make it allocate or address.
inline constexpr std::uint64_t kMaxVirtualSize = 1ULL << 56;   // 64 PiB
inline constexpr std::uint64_t kMaxL1Bytes = 32ULL << 20;      // QEMU's own limit
inline constexpr std::uint32_t kMaxBackingNameLength = 1023;   // QEMU's own limit
inline constexpr unsigned kMaxBackingDepth = 16;

enum class CompressionType : std::uint8_t { Zlib = 0, Zstd = 1 };

struct Header {
    std::uint32_t version { 0 };
    std::uint32_t cluster_bits { 0 };
    std::uint64_t cluster_size { 0 };
    std::uint64_t size { 0 }; // virtual size in bytes
    std::uint32_t l1_size { 0 }; // entries
    std::uint64_t l1_table_offset { 0 };
    std::uint64_t refcount_table_offset { 0 };
    std::uint32_t refcount_table_clusters { 0 };
    std::uint64_t incompatible { 0 };
    std::uint32_t refcount_order { 4 };
    std::uint32_t header_length { 0 };
    CompressionType compression { CompressionType::Zlib };
    bool extended_l2 { false };
    // The backing file name exactly as stored (a host path, untrusted), if any.
    std::optional<std::string> backing_file;
    // The backing format from the header extension ("raw", "qcow2"), if given.
    std::optional<std::string> backing_format;

    std::uint64_t l2_entry_bytes() const { return extended_l2 ? 16 : 8; }
    std::uint64_t l2_entries() const { return cluster_size / l2_entry_bytes(); }
    std::uint64_t subcluster_size() const { return extended_l2 ? cluster_size / 32 : cluster_size; }
};

// The number of bytes parse_header wants to see: the first cluster would do, but
// headers and their extensions always fit in 64 KiB for the images we accept.
inline constexpr std::size_t kHeaderProbeBytes = 65536;

// Parses and validates the header found in head (the file's first bytes, up to
// kHeaderProbeBytes) of a file that is file_size bytes long.
[[nodiscard]] Result<Header> parse_header(std::span<std::byte const> head, std::uint64_t file_size);

// True when bytes start with the qcow2 magic.
bool has_magic(std::span<std::byte const> bytes);

// Big-endian loads and stores (qcow2 is big-endian throughout).
std::uint64_t load_be64(std::byte const* p);
std::uint32_t load_be32(std::byte const* p);
std::uint16_t load_be16(std::byte const* p);
void store_be64(std::byte* p, std::uint64_t v);
void store_be32(std::byte* p, std::uint32_t v);
void store_be16(std::byte* p, std::uint16_t v);

} // namespace strata::qcow2
