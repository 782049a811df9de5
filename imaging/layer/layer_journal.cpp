// Loading a layer: picks the valid header slot, replays the journal (checkpoint,
// then the records after it, each checked by CRC and sequence) into the mapping,
// and validates the mapping against the file (validate_mapping).
#include "imaging/layer/layer_format.h"

#include "imaging/layer/layer_codec.h"

#include <algorithm>
#include <cstring>

namespace strata {

using namespace layer_format;
using namespace layer_codec;

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
        // Each check names itself, so that a report (and a test) tells which failed.
        std::string unreadable;
        if (!magic_is(head, kCheckpointMagic))
            unreadable = "bad magic";
        else if (get64(head, 24) != h.checkpoint_length)
            unreadable = "its length field does not match the header's";
        else if (count > (h.checkpoint_length - kRecordHeader) / kEntrySize)
            unreadable = "its entry count " + std::to_string(count) + " does not fit in its length";
        std::vector<Extent> entries;
        if (unreadable.empty()) {
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
            if (crc != want)
                unreadable = "CRC mismatch";
        }
        if (!unreadable.empty()) {
            out.checkpoint_unreadable = true;
            STRATA_TRY(problem("checkpoint at " + std::to_string(h.checkpoint_offset) + " is unreadable: " + unreadable));
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
