// The layer format's encoding: layer ids, the header codec (two slots, each with
// its CRC) and the journal's record and checkpoint encoders. Replaying a journal
// into a mapping is in layer_journal.cpp.
#include "imaging/layer/layer_format.h"

#include "imaging/layer/layer_codec.h"

#include <algorithm>
#include <cstring>
#include <sys/random.h>

namespace strata {

using namespace layer_format;
using namespace layer_codec;

namespace {

std::string hex(std::span<std::uint8_t const> bytes)
{
    static char const digits[] = "0123456789abcdef";
    std::string s;
    for (auto b : bytes) {
        s.push_back(digits[b >> 4]);
        s.push_back(digits[b & 15]);
    }
    return s;
}

void encode_entries(std::span<Extent const> entries, std::span<std::byte> out)
{
    std::size_t at = kRecordHeader;
    for (auto const& e : entries) {
        put64(out, at, e.first);
        put64(out, at + 8, e.count);
        put64(out, at + 16, e.value);
        at += kEntrySize;
    }
}

} // namespace

LayerId LayerId::random()
{
    LayerId id;
    std::size_t got = 0;
    while (got < id.bytes.size()) {
        ssize_t n = ::getrandom(id.bytes.data() + got, id.bytes.size() - got, 0);
        if (n > 0)
            got += static_cast<std::size_t>(n);
    }
    // Mark it as a version 4 (random) UUID so the text form is a valid UUID.
    id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0f) | 0x40);
    id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3f) | 0x80);
    return id;
}

Result<LayerId> LayerId::parse(std::string_view text)
{
    LayerId id;
    std::size_t n = 0;
    for (char c : text) {
        if (c == '-')
            continue;
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0 || n >= 32)
            return make_error(ErrorKind::Usage, "layer ID '" + std::string(text) + "' is not 32 hex digits");
        id.bytes[n / 2] = static_cast<std::uint8_t>(id.bytes[n / 2] | (n % 2 == 0 ? v << 4 : v));
        ++n;
    }
    if (n != 32)
        return make_error(ErrorKind::Usage, "layer ID '" + std::string(text) + "' is not 32 hex digits");
    return id;
}

std::string LayerId::to_string() const
{
    std::string h = hex(bytes);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

std::string Sha256::to_string() const { return "sha256:" + hex(bytes); }

void encode_header(LayerHeader const& h, std::span<std::byte, kSlotSize> slot)
{
    std::fill(slot.begin(), slot.end(), std::byte { 0 });
    std::memcpy(slot.data(), layer_codec::kHeaderMagic, 8);
    put32(slot, 8, kVersion);
    put32(slot, 12, static_cast<std::uint32_t>(kHeaderLength));
    put64(slot, 16, h.incompat);
    put64(slot, 24, h.compat);
    put64(slot, 32, h.ro_compat);
    put64(slot, 40, h.generation);
    put64(slot, 48, h.virtual_size);
    put32(slot, 56, h.block_size);
    put32(slot, 60, static_cast<std::uint32_t>(h.state));
    std::memcpy(slot.data() + 64, h.id.bytes.data(), 16);
    std::memcpy(slot.data() + 80, h.digest.bytes.data(), 32);
    put64(slot, 112, h.journal_offset);
    put64(slot, 120, h.journal_length);
    put64(slot, 128, h.journal_seq);
    put64(slot, 136, h.checkpoint_offset);
    put64(slot, 144, h.checkpoint_length);
    put64(slot, 152, h.data_start);
    put64(slot, 160, h.created);
    put32(slot, 252, crc32c(std::span<std::byte const>(slot.data(), 252)));
}

Result<LayerHeader> decode_header(std::span<std::byte const> slot, std::uint64_t file_size)
{
    auto bad = [](std::string what) { return make_error(ErrorKind::BadInput, "layer header: " + what); };
    // The reader pads a short file with zeros: say that the file is truncated
    // rather than let the padding fail the CRC.
    if (slot.size() < kHeaderLength || file_size < kHeaderLength)
        return bad("file too short (" + std::to_string(file_size) + " bytes) to hold a header");
    if (!magic_is(slot, layer_codec::kHeaderMagic))
        return bad("bad magic (not a strata layer)");
    if (get32(slot, 252) != crc32c(slot.subspan(0, 252)))
        return bad("CRC mismatch");
    if (get32(slot, 8) != kVersion)
        return make_error(ErrorKind::Unsupported, "layer header: version " + std::to_string(get32(slot, 8)) + " is not supported");
    if (get32(slot, 12) != kHeaderLength)
        return bad("unexpected header length");
    LayerHeader h;
    h.incompat = get64(slot, 16);
    h.compat = get64(slot, 24);
    h.ro_compat = get64(slot, 32);
    h.generation = get64(slot, 40);
    h.virtual_size = get64(slot, 48);
    h.block_size = get32(slot, 56);
    std::uint32_t state = get32(slot, 60);
    std::memcpy(h.id.bytes.data(), slot.data() + 64, 16);
    std::memcpy(h.digest.bytes.data(), slot.data() + 80, 32);
    h.journal_offset = get64(slot, 112);
    h.journal_length = get64(slot, 120);
    h.journal_seq = get64(slot, 128);
    h.checkpoint_offset = get64(slot, 136);
    h.checkpoint_length = get64(slot, 144);
    h.data_start = get64(slot, 152);
    h.created = get64(slot, 160);
    if ((h.incompat & ~kKnownIncompat) != 0)
        return make_error(ErrorKind::Unsupported, "layer uses unknown incompatible features");
    if (h.block_size != kBlockSize)
        return make_error(ErrorKind::Unsupported, "layer block size " + std::to_string(h.block_size) + " is not supported");
    if (state != 1 && state != 2)
        return bad("unknown state " + std::to_string(state));
    h.state = static_cast<LayerState>(state);
    if (h.virtual_size % 512 != 0 || h.virtual_size > layer_format::kMaxVirtualSize)
        return bad("virtual size " + std::to_string(h.virtual_size) + " is not a multiple of 512 up to 2^56");
    if (h.journal_offset != kJournalOffset || h.journal_length % kBlockSize != 0 || h.journal_length > kMaxJournalLength)
        return bad("journal placement is invalid");
    if (h.data_start % kBlockSize != 0 || h.data_start < h.journal_offset + h.journal_length || h.data_start > (1ull << 40))
        return bad("data start is invalid");
    // Every layer is made at least data_start bytes long (its header slots and
    // journal before it), and files only grow: a shorter file was cut, and what
    // it lost (journal records, data) cannot be told from "never written".
    if (file_size < h.data_start)
        return bad("the file is " + std::to_string(file_size) + " bytes, shorter than the " + std::to_string(h.data_start)
            + " its header and journal take: it was truncated");
    if (h.checkpoint_offset != 0 || h.checkpoint_length != 0) {
        if (h.checkpoint_offset % kBlockSize != 0 || h.checkpoint_offset < h.data_start || h.checkpoint_length < kRecordHeader
            || h.checkpoint_length % kBlockSize != 0 || h.checkpoint_length > kMaxCheckpointLength
            || h.checkpoint_offset > file_size || h.checkpoint_length > file_size - h.checkpoint_offset)
            return bad("checkpoint lies outside the file");
    }
    return h;
}

std::uint64_t record_length(std::uint64_t entries)
{
    return (kRecordHeader + entries * kEntrySize + kBlockSize - 1) & ~(kBlockSize - 1);
}

void encode_record(std::uint64_t seq, std::uint64_t data_end, std::span<Extent const> entries, std::span<std::byte> out)
{
    std::uint64_t length = record_length(entries.size());
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(length), std::byte { 0 });
    std::memcpy(out.data(), kRecordMagic, 8);
    put64(out, 8, seq);
    put32(out, 16, static_cast<std::uint32_t>(entries.size()));
    put32(out, 20, static_cast<std::uint32_t>(length));
    put64(out, 24, data_end);
    encode_entries(entries, out);
    put32(out, 60, crc_with_hole(out.subspan(0, length), 60));
}

void encode_checkpoint(std::uint64_t seq, std::uint64_t data_end, std::span<Extent const> entries, std::span<std::byte> out)
{
    std::uint64_t length = record_length(entries.size());
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(length), std::byte { 0 });
    std::memcpy(out.data(), kCheckpointMagic, 8);
    put64(out, 8, seq);
    put64(out, 16, entries.size());
    put64(out, 24, length);
    put64(out, 32, data_end);
    encode_entries(entries, out);
    put32(out, 60, crc_with_hole(out.subspan(0, length), 60));
}

} // namespace strata
