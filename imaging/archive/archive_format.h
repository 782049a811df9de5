// The imaging/archive/ folder: the portable archive (ARCHIVE.md), its format
// (this header), compression (archive_compress.h), writer and reader. What goes
// into an archive (images, machine images) is decided in store/.
//
// The portable archive (imaging/archive/ARCHIVE.md): one self-contained file holding
// named entries — disks (a chain of layers) and blobs (boot artifacts) — as
// zstd-compressed chunks with a SHA-256 per chunk and one over the whole file,
// described by a JSON manifest stored inside it. This header holds the on-disk
// constants, the manifest's types, and the pure functions that parse and check a
// manifest and a trailer; they treat their input as hostile (a fuzz target drives
// them) and bound everything they accept before anything is allocated from it.
//
// Threading: pure functions and value types.
#pragma once

#include "base/result.h"
#include "imaging/layer/layer_format.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strata::archive {

inline constexpr std::array<char, 8> kHeaderMagic { 'S', 'T', 'R', 'A', 'T', 'A', 'R', 'C' };
inline constexpr std::array<char, 8> kTrailerMagic { 'S', 'T', 'R', 'A', 'T', 'E', 'N', 'D' };
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint64_t kHeaderSize = 64;
inline constexpr std::uint64_t kTrailerSize = 64;
// The overall digest covers every byte before it: the trailer's first 24 bytes too.
inline constexpr std::uint64_t kTrailerDigestOffset = 24;

// Caps on what an archive may make strata allocate or address.
inline constexpr std::uint64_t kMaxManifestBytes = 64ULL << 20;
inline constexpr std::uint64_t kMaxChunkSize = 64ULL << 20;
inline constexpr std::uint64_t kMaxEntrySize = 1ULL << 56;
inline constexpr std::size_t kMaxEntries = 4096;
inline constexpr std::size_t kMaxLayersPerDisk = 500;
inline constexpr std::size_t kMaxNameLength = 255;

// One stored chunk: length bytes of the entry (or layer) at offset, stored as a
// zstd frame of stored bytes at file offset at; digest is over the raw bytes.
struct Chunk {
    std::uint64_t offset { 0 };
    std::uint64_t length { 0 };
    std::uint64_t at { 0 };
    std::uint64_t stored { 0 };
    Sha256 digest;
};

// A range [offset, offset + length) recorded as zeros in a layer (hiding lower layers).
struct ZeroRange {
    std::uint64_t offset { 0 };
    std::uint64_t length { 0 };
};

// One layer of a disk, bottom first. Ranges with neither a chunk nor a zero range
// are unmapped (fall through to the layer below; zeros in the bottom layer).
struct LayerRecord {
    std::string id; // the layer's ID in the exporting store (informational)
    std::uint64_t size { 0 };
    std::vector<Chunk> chunks;
    std::vector<ZeroRange> zeros;
};

enum class EntryType { Disk, Blob };

struct Entry {
    std::string name;
    EntryType type { EntryType::Disk };
    std::uint64_t size { 0 };
    std::vector<LayerRecord> layers; // Disk
    std::vector<Chunk> chunks;       // Blob (a blob is whole: no holes)
    Sha256 digest;                   // Blob: over the whole blob
};

struct Manifest {
    std::uint64_t chunk_size { 0 };
    nlohmann::json metadata = nlohmann::json::object(); // what the archive is (image, machine image...)
    std::vector<Entry> entries;
};

struct Trailer {
    std::uint64_t manifest_offset { 0 };
    std::uint64_t manifest_length { 0 };
    Sha256 digest;
};

// The 64-byte file header and trailer.
std::array<std::byte, kHeaderSize> encode_header();
[[nodiscard]] Status check_header(std::span<std::byte const> bytes);
std::array<std::byte, kTrailerSize> encode_trailer(Trailer const& trailer);
[[nodiscard]] Result<Trailer> parse_trailer(std::span<std::byte const> bytes, std::uint64_t file_size);

// The manifest as JSON text, and back. parse_manifest checks every field, that
// chunks are sorted, non-overlapping, inside their entry and inside the data area
// [kHeaderSize, data_end), and that entry names are unique and well formed.
std::string encode_manifest(Manifest const& manifest);
[[nodiscard]] Result<Manifest> parse_manifest(std::string_view text, std::uint64_t data_end);

// Hex helpers for digests in the manifest.
std::string to_hex(Sha256 const& digest);
[[nodiscard]] Result<Sha256> parse_hex_digest(std::string_view text);
[[nodiscard]] Sha256 sha256(std::span<std::byte const> bytes);

} // namespace strata::archive
