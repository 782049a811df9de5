#include "imaging/qcow2/qcow2_format.h"

#include <algorithm>

namespace strata::qcow2 {

std::uint64_t load_be64(std::byte const* p)
{
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
    return v;
}

std::uint32_t load_be32(std::byte const* p)
{
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
        v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
    return v;
}

std::uint16_t load_be16(std::byte const* p)
{
    return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) | std::to_integer<unsigned>(p[1]));
}

void store_be64(std::byte* p, std::uint64_t v)
{
    for (int i = 7; i >= 0; --i, v >>= 8)
        p[i] = static_cast<std::byte>(v & 0xff);
}

void store_be32(std::byte* p, std::uint32_t v)
{
    for (int i = 3; i >= 0; --i, v >>= 8)
        p[i] = static_cast<std::byte>(v & 0xff);
}

void store_be16(std::byte* p, std::uint16_t v)
{
    p[0] = static_cast<std::byte>(v >> 8);
    p[1] = static_cast<std::byte>(v & 0xff);
}

bool has_magic(std::span<std::byte const> bytes)
{
    return bytes.size() >= 4 && load_be32(bytes.data()) == kMagic;
}

static Error bad_qcow2(std::string const& what)
{
    return make_error(ErrorKind::BadInput, "qcow2: " + what);
}

// Parses the header extensions between start and end; only the backing format
// matters for reading, and an external data file is refused.
static Status parse_extensions(std::span<std::byte const> head, std::size_t start, std::size_t end, Header& h)
{
    std::size_t pos = start;
    while (pos + 8 <= end) {
        std::uint32_t type = load_be32(head.data() + pos);
        std::uint32_t len = load_be32(head.data() + pos + 4);
        pos += 8;
        if (type == kExtEnd)
            return ok();
        if (len > end - pos)
            return bad_qcow2("header extension 0x" + std::to_string(type) + " runs past the header cluster");
        if (type == kExtBackingFormat) {
            std::string fmt(reinterpret_cast<char const*>(head.data() + pos), len); // SAFETY: byte span viewed as chars, bounds checked above.
            h.backing_format = fmt;
        } else if (type == kExtDataFile) {
            return make_error(ErrorKind::Unsupported, "qcow2: external data files are not supported");
        }
        std::size_t padded = (static_cast<std::size_t>(len) + 7) & ~std::size_t { 7 };
        if (padded > end - pos)
            return ok(); // the last extension's padding may be cut by the cluster end
        pos += padded;
    }
    return ok();
}

Result<Header> parse_header(std::span<std::byte const> head, std::uint64_t file_size)
{
    if (head.size() < 72 || !has_magic(head))
        return bad_qcow2("not a qcow2 file (no QFI\\xfb magic)");
    std::byte const* p = head.data();
    Header h;
    h.version = load_be32(p + 4);
    if (h.version != 2 && h.version != 3)
        return make_error(ErrorKind::Unsupported, "qcow2: version " + std::to_string(h.version) + " is not supported");
    std::uint64_t backing_offset = load_be64(p + 8);
    std::uint32_t backing_size = load_be32(p + 16);
    h.cluster_bits = load_be32(p + 20);
    if (h.cluster_bits < 9 || h.cluster_bits > 21)
        return bad_qcow2("cluster_bits " + std::to_string(h.cluster_bits) + " outside 9..21");
    h.cluster_size = 1ULL << h.cluster_bits;
    h.size = load_be64(p + 24);
    if (h.size > kMaxVirtualSize)
        return bad_qcow2("virtual size " + std::to_string(h.size) + " is larger than strata's limit (64 PiB)");
    if (load_be32(p + 32) != 0)
        return make_error(ErrorKind::Unsupported, "qcow2: encrypted images are not supported");
    h.l1_size = load_be32(p + 36);
    h.l1_table_offset = load_be64(p + 40);
    h.refcount_table_offset = load_be64(p + 48);
    h.refcount_table_clusters = load_be32(p + 56);

    h.header_length = 72;
    if (h.version == 3) {
        if (head.size() < 104)
            return bad_qcow2("v3 header is truncated");
        h.incompatible = load_be64(p + 72);
        h.refcount_order = load_be32(p + 96);
        h.header_length = load_be32(p + 100);
        if (h.header_length < 104 || h.header_length > h.cluster_size || h.header_length > head.size())
            return bad_qcow2("header_length " + std::to_string(h.header_length) + " is out of range");
        if (h.refcount_order > 6)
            return bad_qcow2("refcount_order " + std::to_string(h.refcount_order) + " is larger than 6");
    }
    std::uint64_t known = kIncompatDirty | kIncompatCorrupt | kIncompatDataFile | kIncompatCompression | kIncompatExtendedL2;
    if ((h.incompatible & ~known) != 0)
        return make_error(ErrorKind::Unsupported, "qcow2: unknown incompatible feature bits set");
    if ((h.incompatible & kIncompatDataFile) != 0)
        return make_error(ErrorKind::Unsupported, "qcow2: external data files are not supported");
    if ((h.incompatible & kIncompatCompression) != 0) {
        if (h.header_length <= 104)
            return bad_qcow2("compression type bit set but the header has no compression_type field");
        auto type = std::to_integer<std::uint8_t>(p[104]);
        if (type > 1)
            return make_error(ErrorKind::Unsupported, "qcow2: compression type " + std::to_string(type) + " is not supported");
        h.compression = static_cast<CompressionType>(type);
    } else if (h.header_length > 104 && p[104] != std::byte { 0 }) {
        return bad_qcow2("compression_type is set without the compression incompatible bit");
    }
    h.extended_l2 = (h.incompatible & kIncompatExtendedL2) != 0;
    if (h.extended_l2 && h.cluster_bits < 14)
        return bad_qcow2("extended L2 entries need clusters of at least 16 KiB");

    // The L1 table must cover the virtual size, stay within the caps and the file,
    // and not overlap the header cluster.
    std::uint64_t per_l2 = h.cluster_size * h.l2_entries();
    std::uint64_t needed = (h.size + per_l2 - 1) / per_l2;
    if (h.l1_size < needed)
        return bad_qcow2("L1 table has " + std::to_string(h.l1_size) + " entries, the virtual size needs " + std::to_string(needed));
    if (std::uint64_t { h.l1_size } * 8 > kMaxL1Bytes)
        return bad_qcow2("L1 table of " + std::to_string(h.l1_size) + " entries is larger than 32 MiB");
    if (h.l1_size > 0) {
        if (h.l1_table_offset % h.cluster_size != 0 || h.l1_table_offset < h.cluster_size)
            return bad_qcow2("L1 table offset " + std::to_string(h.l1_table_offset) + " is misaligned or overlaps the header");
        if (h.l1_table_offset > file_size || std::uint64_t { h.l1_size } * 8 > file_size - h.l1_table_offset)
            return bad_qcow2("L1 table runs past the end of the file");
    }

    std::size_t cluster_end = static_cast<std::size_t>(std::min<std::uint64_t>(h.cluster_size, head.size()));
    if (backing_offset != 0) {
        if (backing_size == 0 || backing_size > kMaxBackingNameLength)
            return bad_qcow2("backing file name length " + std::to_string(backing_size) + " is out of range");
        if (backing_offset > cluster_end || backing_size > cluster_end - backing_offset)
            return bad_qcow2("backing file name lies outside the header cluster");
        std::string name(reinterpret_cast<char const*>(p + backing_offset), backing_size); // SAFETY: byte span viewed as chars, bounds checked above.
        if (name.find('\0') != std::string::npos)
            return bad_qcow2("backing file name contains a NUL byte");
        h.backing_file = std::move(name);
    }
    STRATA_TRY(parse_extensions(head, h.header_length, cluster_end, h));
    return h;
}

} // namespace strata::qcow2
