#include "imaging/layer/layer_format.h"

#include "imaging/layer/crc32c.h"

#include <algorithm>
#include <cstring>
#include <sys/random.h>

namespace strata {

using namespace layer_format;

namespace {

constexpr char kHeaderMagic[8] = { 'S', 'T', 'R', 'A', 'T', 'A', 'L', 'Y' };
constexpr char kCheckpointMagic[8] = { 'S', 'T', 'R', 'C', 'K', 'P', 'T', '1' };
constexpr char kRecordMagic[8] = { 'S', 'T', 'R', 'J', 'R', 'N', 'L', '1' };

void put64(std::span<std::byte> b, std::size_t at, std::uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        b[at + static_cast<std::size_t>(i)] = static_cast<std::byte>(v >> (8 * i));
}
void put32(std::span<std::byte> b, std::size_t at, std::uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        b[at + static_cast<std::size_t>(i)] = static_cast<std::byte>(v >> (8 * i));
}
std::uint64_t get64(std::span<std::byte const> b, std::size_t at)
{
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i)
        v = (v << 8) | static_cast<std::uint64_t>(b[at + static_cast<std::size_t>(i)]);
    return v;
}
std::uint32_t get32(std::span<std::byte const> b, std::size_t at)
{
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i)
        v = (v << 8) | static_cast<std::uint32_t>(b[at + static_cast<std::size_t>(i)]);
    return v;
}
bool magic_is(std::span<std::byte const> b, char const (&magic)[8])
{
    return b.size() >= 8 && std::memcmp(b.data(), magic, 8) == 0;
}

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

// The CRC of a structure whose CRC field (4 bytes at crc_at) counts as zero.
std::uint32_t crc_with_hole(std::span<std::byte const> b, std::size_t crc_at)
{
    static constexpr std::byte zeros[4] {};
    std::uint32_t c = crc32c(b.subspan(0, crc_at));
    c = crc32c(zeros, c);
    return crc32c(b.subspan(crc_at + 4), c);
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
    std::memcpy(slot.data(), kHeaderMagic, 8);
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
    if (slot.size() < kHeaderLength)
        return bad("file too short");
    if (!magic_is(slot, kHeaderMagic))
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
    if (h.virtual_size % 512 != 0 || h.virtual_size > kMaxVirtualSize)
        return bad("virtual size " + std::to_string(h.virtual_size) + " is not a multiple of 512 up to 2^56");
    if (h.journal_offset != kJournalOffset || h.journal_length % kBlockSize != 0 || h.journal_length > kMaxJournalLength)
        return bad("journal placement is invalid");
    if (h.data_start % kBlockSize != 0 || h.data_start < h.journal_offset + h.journal_length || h.data_start > (1ull << 40))
        return bad("data start is invalid");
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

namespace {

// Checks one decoded entry against the virtual size; an empty string means good.
std::string entry_problem(Extent const& e, std::uint64_t virtual_blocks, bool checkpoint)
{
    auto kind = mapval::kind(e.value);
    if ((e.value & 0xffc) != 0 || kind == static_cast<MapKind>(3))
        return "mapping entry for block " + std::to_string(e.first) + " has an invalid value";
    if (e.count == 0 || e.first >= virtual_blocks || e.count > virtual_blocks - e.first)
        return "mapping entry [" + std::to_string(e.first) + ", +" + std::to_string(e.count) + ") lies outside the virtual size";
    if (checkpoint && kind == MapKind::Unmapped)
        return "checkpoint holds an unmapped entry";
    if (kind == MapKind::Data && mapval::offset(e.value) > (UINT64_MAX >> 1) - (e.count << kBlockShift))
        return "mapping entry for block " + std::to_string(e.first) + " has an impossible data offset";
    return {};
}

// Reads count entries that start at byte `at` of buf into out.
void decode_entries(std::span<std::byte const> buf, std::size_t at, std::uint64_t count, std::vector<Extent>& out)
{
    for (std::uint64_t i = 0; i < count; ++i, at += kEntrySize)
        out.push_back(Extent { get64(buf, at), get64(buf, at + 8), get64(buf, at + 16) });
}

} // namespace

Result<LoadedLayer> load_layer(FileReader const& read, std::uint64_t file_size, bool tolerant)
{
    LoadedLayer out;
    std::vector<std::byte> slots(2 * kSlotSize);
    STRATA_TRY(read(0, slots));
    auto a = decode_header(std::span<std::byte const>(slots).subspan(0, kSlotSize), file_size);
    auto b = decode_header(std::span<std::byte const>(slots).subspan(kSlotSize, kSlotSize), file_size);
    if (!a && !b)
        return a.error();
    if (a && (!b || a.value().generation >= b.value().generation)) {
        out.header = a.value();
        out.header_slot = 0;
    } else {
        out.header = b.value();
        out.header_slot = 1;
    }
    LayerHeader const& h = out.header;
    std::uint64_t const virtual_blocks = (h.virtual_size + kBlockSize - 1) >> kBlockShift;
    out.data_end = h.data_start;

    auto problem = [&](std::string what) -> Status {
        if (!tolerant)
            return make_error(ErrorKind::BadInput, "layer mapping: " + what);
        out.corruptions.push_back(std::move(what));
        return ok();
    };

    if (h.checkpoint_length != 0) {
        // Read the checkpoint in bounded chunks; nothing is sized from its contents
        // beyond what the (already bounded) length allows.
        std::vector<std::byte> head(kRecordHeader);
        STRATA_TRY(read(h.checkpoint_offset, head));
        std::uint64_t count = get64(head, 16);
        bool ok_shape = magic_is(head, kCheckpointMagic) && get64(head, 24) == h.checkpoint_length
            && count <= (h.checkpoint_length - kRecordHeader) / kEntrySize;
        std::vector<Extent> entries;
        bool crc_ok = false;
        if (ok_shape) {
            std::uint32_t want = get32(head, 60);
            std::uint32_t crc = 0;
            std::uint64_t const chunk = 1 << 20;
            std::vector<std::byte> buf;
            std::uint64_t entries_left = count;
            std::vector<std::byte> carry;
            for (std::uint64_t at = 0; at < h.checkpoint_length; at += chunk) {
                std::uint64_t n = std::min(chunk, h.checkpoint_length - at);
                buf.resize(n);
                STRATA_TRY(read(h.checkpoint_offset + at, buf));
                if (at == 0)
                    std::fill(buf.begin() + 60, buf.begin() + 64, std::byte { 0 });
                crc = crc32c(buf, crc);
                // Entries may straddle chunks: decode from carry + buf.
                carry.insert(carry.end(), buf.begin() + (at == 0 ? static_cast<std::ptrdiff_t>(kRecordHeader) : 0), buf.end());
                std::uint64_t whole = std::min<std::uint64_t>(carry.size() / kEntrySize, entries_left);
                decode_entries(carry, 0, whole, entries);
                entries_left -= whole;
                carry.erase(carry.begin(), carry.begin() + static_cast<std::ptrdiff_t>(whole * kEntrySize));
                if (entries_left == 0)
                    carry.clear();
            }
            crc_ok = crc == want;
        }
        if (!ok_shape || !crc_ok) {
            out.checkpoint_unreadable = true;
            STRATA_TRY(problem("checkpoint at " + std::to_string(h.checkpoint_offset) + " is unreadable (bad magic, length or CRC)"));
        } else {
            std::uint64_t prev_end = 0;
            for (auto const& e : entries) {
                std::string p = entry_problem(e, virtual_blocks, true);
                if (p.empty() && e.first < prev_end)
                    p = "checkpoint entries overlap or are out of order at block " + std::to_string(e.first);
                if (!p.empty()) {
                    STRATA_TRY(problem(p));
                    continue;
                }
                prev_end = e.first + e.count;
                out.map.assign(e.first, e.count, e.value);
            }
            out.data_end = std::max(out.data_end, get64(head, 32));
        }
        out.data_end = std::max(out.data_end, h.checkpoint_offset + h.checkpoint_length);
    }

    // Replay the journal: records back to back, stopping at the first one that is
    // not the next in sequence or fails its CRC (a torn or stale record).
    std::uint64_t pos = 0;
    std::uint64_t seq = h.journal_seq;
    std::vector<std::byte> rec;
    while (pos + kBlockSize <= h.journal_length) {
        std::uint64_t at = h.journal_offset + pos;
        if (at >= file_size)
            break;
        rec.resize(kBlockSize);
        STRATA_TRY(read(at, rec));
        if (!magic_is(rec, kRecordMagic) || get64(rec, 8) != seq)
            break;
        std::uint64_t count = get32(rec, 16);
        std::uint64_t length = get32(rec, 20);
        if (length != record_length(count) || length > h.journal_length - pos)
            break;
        rec.resize(length);
        if (length > kBlockSize)
            STRATA_TRY(read(at + kBlockSize, std::span<std::byte>(rec).subspan(kBlockSize)));
        if (get32(rec, 60) != crc_with_hole(rec, 60))
            break;
        std::vector<Extent> entries;
        decode_entries(rec, kRecordHeader, count, entries);
        for (auto const& e : entries) {
            std::string p = entry_problem(e, virtual_blocks, false);
            if (!p.empty()) {
                STRATA_TRY(problem("journal record " + std::to_string(seq) + ": " + p));
                continue;
            }
            out.map.assign(e.first, e.count, e.value);
        }
        out.data_end = std::max(out.data_end, get64(rec, 24));
        pos += length;
        ++seq;
        ++out.records;
    }
    out.journal_head = pos;
    out.next_seq = seq;
    if (out.data_end > (1ull << 60))
        STRATA_TRY(problem("data end " + std::to_string(out.data_end) + " is impossible"));
    return out;
}

std::vector<std::string> validate_mapping(LoadedLayer& layer, std::uint64_t file_size, bool drop_bad)
{
    std::vector<std::string> problems;
    LayerHeader const& h = layer.header;
    struct Phys {
        std::uint64_t start, end, first, count;
    };
    std::vector<Phys> phys;
    std::vector<Extent> bad;
    layer.map.for_each([&](Extent const& e) {
        if (mapval::kind(e.value) != MapKind::Data)
            return;
        std::uint64_t start = mapval::offset(e.value);
        std::uint64_t end = start + (e.count << kBlockShift);
        if (start < h.data_start || end > file_size) {
            problems.push_back("blocks [" + std::to_string(e.first) + ", +" + std::to_string(e.count) + ") point at ["
                + std::to_string(start) + ", " + std::to_string(end) + "), outside the data area (file size "
                + std::to_string(file_size) + ")");
            bad.push_back(e);
            return;
        }
        if (h.checkpoint_length != 0 && start < h.checkpoint_offset + h.checkpoint_length && h.checkpoint_offset < end) {
            problems.push_back("blocks [" + std::to_string(e.first) + ", +" + std::to_string(e.count) + ") overlap the checkpoint");
            bad.push_back(e);
            return;
        }
        phys.push_back(Phys { start, end, e.first, e.count });
    });
    std::sort(phys.begin(), phys.end(), [](Phys const& x, Phys const& y) { return x.start < y.start; });
    std::uint64_t reach = 0;
    for (std::size_t i = 0; i < phys.size(); ++i) {
        if (phys[i].start < reach) {
            problems.push_back("blocks [" + std::to_string(phys[i].first) + ", +" + std::to_string(phys[i].count)
                + ") share file space with another mapping");
            bad.push_back(Extent { phys[i].first, phys[i].count, 0 });
        }
        reach = std::max(reach, phys[i].end);
    }
    if (drop_bad)
        for (auto const& e : bad)
            layer.map.erase(e.first, e.count);
    return problems;
}

} // namespace strata
