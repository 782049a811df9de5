#include "imaging/archive/archive_format.h"

#include "base/sha256.h"

#include <algorithm>
#include <cstring>
#include <set>

namespace strata::archive {

using nlohmann::json;

static Error bad_archive(std::string const& what)
{
    return make_error(ErrorKind::BadInput, "archive: " + what);
}

static void store_le64(std::byte* p, std::uint64_t v)
{
    for (int i = 0; i < 8; ++i, v >>= 8)
        p[i] = static_cast<std::byte>(v & 0xff);
}

static std::uint64_t load_le64(std::byte const* p)
{
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i)
        v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
    return v;
}

std::array<std::byte, kHeaderSize> encode_header()
{
    std::array<std::byte, kHeaderSize> h {};
    std::memcpy(h.data(), kHeaderMagic.data(), 8);
    store_le64(h.data() + 8, kVersion);
    return h;
}

Status check_header(std::span<std::byte const> bytes)
{
    if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kHeaderMagic.data(), 8) != 0)
        return bad_archive("not a strata archive (no STRATARC magic)");
    std::uint64_t version = load_le64(bytes.data() + 8);
    if (version != kVersion)
        return make_error(ErrorKind::Unsupported, "archive: version " + std::to_string(version) + " is not supported");
    return ok();
}

std::array<std::byte, kTrailerSize> encode_trailer(Trailer const& t)
{
    std::array<std::byte, kTrailerSize> b {};
    std::memcpy(b.data(), kTrailerMagic.data(), 8);
    store_le64(b.data() + 8, t.manifest_offset);
    store_le64(b.data() + 16, t.manifest_length);
    std::memcpy(b.data() + kTrailerDigestOffset, t.digest.bytes.data(), 32);
    return b;
}

Result<Trailer> parse_trailer(std::span<std::byte const> bytes, std::uint64_t file_size)
{
    if (bytes.size() < kTrailerSize || std::memcmp(bytes.data(), kTrailerMagic.data(), 8) != 0)
        return bad_archive("the file is truncated or not an archive (no STRATEND trailer)");
    Trailer t;
    t.manifest_offset = load_le64(bytes.data() + 8);
    t.manifest_length = load_le64(bytes.data() + 16);
    std::memcpy(t.digest.bytes.data(), bytes.data() + kTrailerDigestOffset, 32);
    if (file_size < kHeaderSize + kTrailerSize || t.manifest_length > kMaxManifestBytes || t.manifest_offset < kHeaderSize
        || t.manifest_offset > file_size - kTrailerSize || t.manifest_length != file_size - kTrailerSize - t.manifest_offset)
        return bad_archive("the trailer's manifest location does not fit the file");
    return t;
}

std::string to_hex(Sha256 const& digest)
{
    static char const digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (auto b : digest.bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

Result<Sha256> parse_hex_digest(std::string_view text)
{
    if (text.size() != 64)
        return bad_archive("a SHA-256 digest must be 64 hex digits");
    Sha256 d;
    for (std::size_t i = 0; i < 32; ++i) {
        unsigned v = 0;
        for (char c : text.substr(i * 2, 2)) {
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= static_cast<unsigned>(c - 'a' + 10);
            else
                return bad_archive("a SHA-256 digest must be lowercase hex");
        }
        d.bytes[i] = static_cast<std::uint8_t>(v);
    }
    return d;
}

Sha256 sha256(std::span<std::byte const> bytes)
{
    return Sha256 { sha256_bytes(bytes) };
}

static json chunks_json(std::vector<Chunk> const& chunks)
{
    json out = json::array();
    for (auto const& c : chunks)
        out.push_back(json::array({ c.offset, c.length, c.at, c.stored, to_hex(c.digest) }));
    return out;
}

std::string encode_manifest(Manifest const& m)
{
    json entries = json::array();
    for (auto const& e : m.entries) {
        json je { { "name", e.name }, { "size", e.size } };
        if (e.type == EntryType::Disk) {
            je["type"] = "disk";
            json layers = json::array();
            for (auto const& l : e.layers) {
                json zeros = json::array();
                for (auto const& z : l.zeros)
                    zeros.push_back(json::array({ z.offset, z.length }));
                layers.push_back({ { "id", l.id }, { "size", l.size }, { "chunks", chunks_json(l.chunks) }, { "zeros", zeros } });
            }
            je["layers"] = layers;
        } else {
            je["type"] = "blob";
            je["sha256"] = to_hex(e.digest);
            je["chunks"] = chunks_json(e.chunks);
        }
        entries.push_back(je);
    }
    json doc { { "format", "strata-archive" }, { "version", kVersion }, { "compression", "zstd" },
        { "chunk_size", m.chunk_size }, { "metadata", m.metadata }, { "entries", entries } };
    return doc.dump(1);
}

// --- Parsing: every access checks the JSON type first (no exceptions). ---

static Result<std::uint64_t> get_u64(json const& obj, char const* key)
{
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_unsigned())
        return bad_archive(std::string("manifest field '") + key + "' is missing or not an unsigned integer");
    return it->get<std::uint64_t>();
}

static Result<std::string> get_string(json const& obj, char const* key)
{
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string())
        return bad_archive(std::string("manifest field '") + key + "' is missing or not a string");
    return it->get<std::string>();
}

static Result<json const*> get_array(json const& obj, char const* key)
{
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_array())
        return bad_archive(std::string("manifest field '") + key + "' is missing or not an array");
    return &*it;
}

static Status check_name(std::string const& name)
{
    if (name.empty() || name.size() > kMaxNameLength || name == "." || name == ".." || name.find('/') != std::string::npos)
        return bad_archive("entry name '" + name + "' is empty, too long or contains '/'");
    for (char c : name)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return bad_archive("entry name contains a control character");
    return ok();
}

static Result<std::vector<Chunk>> parse_chunks(json const& list, std::uint64_t size, std::uint64_t chunk_size, std::uint64_t data_end)
{
    std::vector<Chunk> out;
    if (list.size() > size / 512 + 1)
        return bad_archive("more chunks than the entry has sectors");
    out.reserve(list.size());
    std::uint64_t end = 0;
    for (auto const& item : list) {
        if (!item.is_array() || item.size() != 5 || !item[0].is_number_unsigned() || !item[1].is_number_unsigned()
            || !item[2].is_number_unsigned() || !item[3].is_number_unsigned() || !item[4].is_string())
            return bad_archive("a chunk is not [offset, length, at, stored, sha256]");
        Chunk c { item[0].get<std::uint64_t>(), item[1].get<std::uint64_t>(), item[2].get<std::uint64_t>(),
            item[3].get<std::uint64_t>(), {} };
        STRATA_TRY(digest, parse_hex_digest(item[4].get<std::string>()));
        c.digest = digest;
        if (c.length == 0 || c.length > chunk_size || c.offset < end || c.offset > size || c.length > size - c.offset)
            return bad_archive("a chunk is empty, larger than the chunk size, unsorted, overlapping or outside its entry");
        if (c.stored == 0 || c.stored > chunk_size + (chunk_size >> 7) + 1024 || c.at < kHeaderSize || c.at > data_end
            || c.stored > data_end - c.at)
            return bad_archive("a chunk's stored bytes lie outside the archive's data area");
        end = c.offset + c.length;
        out.push_back(c);
    }
    return out;
}

static Result<LayerRecord> parse_layer(json const& jl, std::uint64_t disk_size, std::uint64_t chunk_size, std::uint64_t data_end)
{
    if (!jl.is_object())
        return bad_archive("a layer is not an object");
    LayerRecord l;
    STRATA_TRY(id, get_string(jl, "id"));
    STRATA_TRY(size, get_u64(jl, "size"));
    if (id.size() > kMaxNameLength || size > disk_size || size % 512 != 0)
        return bad_archive("a layer's id is too long or its size is larger than its disk or not a multiple of 512");
    l.id = id;
    l.size = size;
    STRATA_TRY(chunks, get_array(jl, "chunks"));
    STRATA_TRY(parsed, parse_chunks(*chunks, size, chunk_size, data_end));
    l.chunks = std::move(parsed);
    STRATA_TRY(zeros, get_array(jl, "zeros"));
    if (zeros->size() > size / 512 + 1)
        return bad_archive("more zero ranges than the layer has sectors");
    std::uint64_t end = 0;
    for (auto const& z : *zeros) {
        if (!z.is_array() || z.size() != 2 || !z[0].is_number_unsigned() || !z[1].is_number_unsigned())
            return bad_archive("a zero range is not [offset, length]");
        ZeroRange r { z[0].get<std::uint64_t>(), z[1].get<std::uint64_t>() };
        if (r.length == 0 || r.offset < end || r.offset > size || r.length > size - r.offset)
            return bad_archive("a zero range is empty, unsorted or outside its layer");
        end = r.offset + r.length;
        l.zeros.push_back(r);
    }
    return l;
}

static Result<Entry> parse_entry(json const& je, std::uint64_t chunk_size, std::uint64_t data_end)
{
    if (!je.is_object())
        return bad_archive("an entry is not an object");
    Entry e;
    STRATA_TRY(name, get_string(je, "name"));
    STRATA_TRY(check_name(name));
    e.name = name;
    STRATA_TRY(type, get_string(je, "type"));
    STRATA_TRY(size, get_u64(je, "size"));
    if (size > kMaxEntrySize)
        return bad_archive("entry '" + name + "' is larger than strata's limit");
    e.size = size;
    if (type == "disk") {
        e.type = EntryType::Disk;
        if (size % 512 != 0)
            return bad_archive("disk '" + name + "' has a size that is not a multiple of 512");
        STRATA_TRY(layers, get_array(je, "layers"));
        if (layers->empty() || layers->size() > kMaxLayersPerDisk)
            return bad_archive("disk '" + name + "' has no layers or too many");
        for (auto const& jl : *layers) {
            auto layer = parse_layer(jl, size, chunk_size, data_end);
            if (!layer)
                return layer.error().context("disk '" + name + "'");
            e.layers.push_back(std::move(layer.value()));
        }
    } else if (type == "blob") {
        e.type = EntryType::Blob;
        STRATA_TRY(hex, get_string(je, "sha256"));
        STRATA_TRY(digest, parse_hex_digest(hex));
        e.digest = digest;
        STRATA_TRY(chunks, get_array(je, "chunks"));
        STRATA_TRY(parsed, parse_chunks(*chunks, size, chunk_size, data_end));
        e.chunks = std::move(parsed);
        std::uint64_t covered = 0;
        for (auto const& c : e.chunks) {
            if (c.offset != covered)
                return bad_archive("blob '" + name + "' has a gap between chunks");
            covered += c.length;
        }
        if (covered != size)
            return bad_archive("blob '" + name + "' chunks do not cover its size");
    } else {
        return make_error(ErrorKind::Unsupported, "archive: entry type '" + type + "' is not supported");
    }
    return e;
}

Result<Manifest> parse_manifest(std::string_view text, std::uint64_t data_end)
{
    json doc = json::parse(text.begin(), text.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return bad_archive("the manifest is not a JSON object");
    STRATA_TRY(format, get_string(doc, "format"));
    if (format != "strata-archive")
        return bad_archive("the manifest's format is '" + format + "', not strata-archive");
    STRATA_TRY(version, get_u64(doc, "version"));
    if (version != kVersion)
        return make_error(ErrorKind::Unsupported, "archive: manifest version " + std::to_string(version) + " is not supported");
    STRATA_TRY(compression, get_string(doc, "compression"));
    if (compression != "zstd")
        return make_error(ErrorKind::Unsupported, "archive: compression '" + compression + "' is not supported");
    Manifest m;
    STRATA_TRY(chunk_size, get_u64(doc, "chunk_size"));
    if (chunk_size < 4096 || chunk_size > kMaxChunkSize || chunk_size % 4096 != 0)
        return bad_archive("chunk_size must be a multiple of 4 KiB up to 64 MiB");
    m.chunk_size = chunk_size;
    auto meta = doc.find("metadata");
    if (meta == doc.end() || !meta->is_object())
        return bad_archive("manifest field 'metadata' is missing or not an object");
    m.metadata = *meta;
    STRATA_TRY(entries, get_array(doc, "entries"));
    if (entries->size() > kMaxEntries)
        return bad_archive("too many entries");
    std::set<std::string> names;
    for (auto const& je : *entries) {
        STRATA_TRY(entry, parse_entry(je, chunk_size, data_end));
        if (!names.insert(entry.name).second)
            return bad_archive("entry name '" + entry.name + "' appears twice");
        m.entries.push_back(std::move(entry));
    }
    return m;
}

} // namespace strata::archive
