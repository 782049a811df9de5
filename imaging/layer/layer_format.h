// The on-disk encoding of a strata layer (imaging/layer/FORMAT.md): header slots,
// checkpoints and journal records, and load_layer(), which reads a layer's
// metadata through a caller's reader and rebuilds its mapping. Everything here is
// pure parsing over bytes the caller supplies, so the fuzz target drives exactly
// the code that opens real layers. Every length read from a file is checked
// against the file size and fixed caps before anything is allocated.
//
// Threading: pure functions and value types.
#pragma once

#include "base/result.h"
#include "imaging/layer/extent_map.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

struct LayerId {
    std::array<std::uint8_t, 16> bytes {};

    [[nodiscard]] static LayerId random();
    // Accepts 32 hex digits, with or without the dashes of the UUID form.
    [[nodiscard]] static Result<LayerId> parse(std::string_view text);
    // The UUID form: 8-4-4-4-12 lowercase hex digits.
    std::string to_string() const;
    bool operator==(LayerId const&) const = default;
};

struct Sha256 {
    std::array<std::uint8_t, 32> bytes {};
    std::string to_string() const; // "sha256:" + 64 hex digits
    bool operator==(Sha256 const&) const = default;
};

enum class LayerState : std::uint32_t { Writable = 1, Frozen = 2 };

namespace layer_format {
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint64_t kSlotSize = 4096;
inline constexpr std::uint64_t kHeaderLength = 256;
inline constexpr std::uint64_t kJournalOffset = 2 * kSlotSize;
inline constexpr std::uint64_t kDefaultJournalLength = 4 << 20;
inline constexpr std::uint64_t kMaxJournalLength = 1ull << 30;
inline constexpr std::uint64_t kMaxVirtualSize = 1ull << 56;
inline constexpr std::uint64_t kMaxCheckpointLength = 1ull << 32;
inline constexpr std::uint64_t kEntrySize = 24;
inline constexpr std::uint64_t kRecordHeader = 64;
inline constexpr std::uint64_t kCompatDigest = 1;
// The digest is of the layer's content alone (data extents that follow each
// other in block order hashed as one). A digest without this bit was recorded
// by an older strata, whose digest hashed each extent of the file's layout:
// it is the same value only when no two data extents follow each other.
inline constexpr std::uint64_t kCompatContentDigest = 2;
// Feature bits this version understands.
inline constexpr std::uint64_t kKnownIncompat = 0;
inline constexpr std::uint64_t kKnownCompat = kCompatDigest | kCompatContentDigest;
inline constexpr std::uint64_t kKnownRoCompat = 0;
} // namespace layer_format

struct LayerHeader {
    std::uint64_t incompat { 0 };
    std::uint64_t compat { 0 };
    std::uint64_t ro_compat { 0 };
    std::uint64_t generation { 0 };
    std::uint64_t virtual_size { 0 };
    std::uint32_t block_size { 4096 };
    LayerState state { LayerState::Writable };
    LayerId id;
    Sha256 digest; // meaningful when compat has kCompatDigest
    std::uint64_t journal_offset { layer_format::kJournalOffset };
    std::uint64_t journal_length { layer_format::kDefaultJournalLength };
    std::uint64_t journal_seq { 1 };
    std::uint64_t checkpoint_offset { 0 };
    std::uint64_t checkpoint_length { 0 };
    std::uint64_t data_start { 0 };
    std::uint64_t created { 0 };

    bool has_digest() const { return (compat & layer_format::kCompatDigest) != 0; }
    // The digest is of the current definition (not one an older strata
    // computed over the file's layout).
    bool has_content_digest() const
    {
        auto both = layer_format::kCompatDigest | layer_format::kCompatContentDigest;
        return (compat & both) == both;
    }
};

// Encodes into a full 4096-byte slot (the rest zero).
void encode_header(LayerHeader const& header, std::span<std::byte, layer_format::kSlotSize> slot);
// Checks magic, CRC, version, sizes and field bounds against the file size.
[[nodiscard]] Result<LayerHeader> decode_header(std::span<std::byte const> slot, std::uint64_t file_size);

// Bytes a journal record / checkpoint with n entries occupies (4096-multiple).
std::uint64_t record_length(std::uint64_t entries);
void encode_record(std::uint64_t seq, std::uint64_t data_end, std::span<Extent const> entries, std::span<std::byte> out);
void encode_checkpoint(std::uint64_t seq, std::uint64_t data_end, std::span<Extent const> entries, std::span<std::byte> out);

// Reads exactly buf.size() bytes at offset; bytes past end of file read as zero.
using FileReader = std::function<Status(std::uint64_t offset, std::span<std::byte> buf)>;

// What load_layer found: the mapping, where the journal ends, and any problems.
struct LoadedLayer {
    LayerHeader header;
    unsigned header_slot { 0 };   // which slot is current (0 = A, 1 = B)
    ExtentMap map;
    std::uint64_t data_end { 0 };     // highest allocation recorded
    std::uint64_t journal_head { 0 }; // bytes of the journal in use
    std::uint64_t next_seq { 0 };     // sequence the next journal record gets
    std::uint64_t records { 0 };      // journal records replayed
    bool checkpoint_unreadable { false }; // the whole checkpointed mapping is lost
    std::vector<std::string> corruptions;
};

// Loads header, checkpoint and journal. With tolerant = false any corrupt entry
// is an error (BadInput); with tolerant = true (check/repair) corrupt entries are
// skipped and described in corruptions. An unreadable header is an error either way.
[[nodiscard]] Result<LoadedLayer> load_layer(FileReader const& read, std::uint64_t file_size, bool tolerant);

// Checks data entries against each other and the file: alignment, bounds (data
// start .. file end), overlap between entries and with the checkpoint. Returns
// one sentence per problem; drop_bad removes the offending extents from the map.
std::vector<std::string> validate_mapping(LoadedLayer& layer, std::uint64_t file_size, bool drop_bad);

} // namespace strata
