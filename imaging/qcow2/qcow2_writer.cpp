#include "imaging/qcow2/qcow2_writer.h"

#include "base/fd.h"
#include "imaging/qcow2/qcow2_format.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

namespace strata {

using namespace qcow2;

namespace {

constexpr std::size_t kChunk = 4 << 20; // bytes read from the source at once

struct Layout {
    std::uint64_t cs { 0 };
    std::uint64_t l2_entries { 0 };
    std::uint32_t l1_size { 0 };
    std::uint64_t next { 0 }; // next free cluster index
    std::map<std::uint64_t, std::vector<std::uint64_t>> l2; // by L1 index
};

// Writes the non-zero clusters of buf (the source bytes at pos) as data clusters
// in order, coalescing neighbours into one pwrite.
Status write_chunk(int fd, Layout& lay, std::uint64_t pos, std::span<std::byte const> buf)
{
    std::size_t run_start = 0, run_len = 0;
    std::uint64_t run_host = 0;
    auto flush_run = [&]() -> Status {
        if (run_len > 0)
            STRATA_TRY(pwrite_all(fd, buf.subspan(run_start, run_len), run_host));
        run_len = 0;
        return ok();
    };
    for (std::size_t off = 0; off < buf.size(); off += lay.cs) {
        auto cluster = buf.subspan(off, static_cast<std::size_t>(lay.cs));
        if (is_zero(cluster)) {
            STRATA_TRY(flush_run());
            continue;
        }
        std::uint64_t index = (pos + off) / lay.cs;
        std::uint64_t host = lay.next++ * lay.cs;
        auto& table = lay.l2[index / lay.l2_entries];
        if (table.empty())
            table.resize(lay.l2_entries);
        table[index % lay.l2_entries] = host | kCopied;
        if (run_len == 0) {
            run_start = off;
            run_host = host;
        }
        run_len += static_cast<std::size_t>(lay.cs);
    }
    return flush_run();
}

std::vector<std::byte> encode_entries(std::vector<std::uint64_t> const& entries, std::uint64_t bytes)
{
    std::vector<std::byte> out(bytes);
    for (std::size_t i = 0; i < entries.size(); ++i)
        store_be64(out.data() + i * 8, entries[i]);
    return out;
}

// Writes the L2 tables, the L1 table, the refcounts and the header.
Status write_metadata(int fd, Layout& lay, std::uint64_t virtual_size, unsigned cluster_bits)
{
    std::uint64_t cs = lay.cs;
    std::vector<std::uint64_t> l1(lay.l1_size);
    for (auto const& [index, table] : lay.l2) {
        std::uint64_t host = lay.next++ * cs;
        l1[index] = host | kCopied;
        STRATA_TRY(pwrite_all(fd, encode_entries(table, cs), host));
    }
    std::uint64_t l1_clusters = std::max<std::uint64_t>(1, (std::uint64_t { lay.l1_size } * 8 + cs - 1) / cs);
    STRATA_TRY(pwrite_all(fd, encode_entries(l1, l1_clusters * cs), cs));

    // Refcount blocks must count themselves and the table: iterate to a fixed point.
    std::uint64_t per_block = cs / 2; // 16-bit refcounts
    std::uint64_t blocks = 1, table_clusters = 1;
    for (;;) {
        std::uint64_t total = lay.next + blocks + table_clusters;
        std::uint64_t want_blocks = (total + per_block - 1) / per_block;
        std::uint64_t want_table = std::max<std::uint64_t>(1, (want_blocks * 8 + cs - 1) / cs);
        if (want_blocks == blocks && want_table == table_clusters)
            break;
        blocks = want_blocks;
        table_clusters = want_table;
    }
    std::uint64_t table_at = lay.next;
    std::uint64_t blocks_at = table_at + table_clusters;
    std::uint64_t total = blocks_at + blocks;
    std::vector<std::uint64_t> table(blocks);
    for (std::uint64_t b = 0; b < blocks; ++b)
        table[b] = (blocks_at + b) * cs;
    STRATA_TRY(pwrite_all(fd, encode_entries(table, table_clusters * cs), table_at * cs));
    std::vector<std::byte> block(cs);
    for (std::uint64_t b = 0; b < blocks; ++b) {
        std::fill(block.begin(), block.end(), std::byte { 0 });
        for (std::uint64_t i = 0; i < per_block && b * per_block + i < total; ++i)
            store_be16(block.data() + i * 2, 1);
        STRATA_TRY(pwrite_all(fd, block, (blocks_at + b) * cs));
    }

    std::vector<std::byte> header(cs);
    std::byte* h = header.data();
    store_be32(h + 0, kMagic);
    store_be32(h + 4, 3);
    store_be32(h + 20, cluster_bits);
    store_be64(h + 24, virtual_size);
    store_be32(h + 36, lay.l1_size);
    store_be64(h + 40, cs);
    store_be64(h + 48, table_at * cs);
    store_be32(h + 56, static_cast<std::uint32_t>(table_clusters));
    store_be32(h + 96, 4);   // refcount_order: 16-bit refcounts
    store_be32(h + 100, 112); // header_length; compression_type (zlib) at 104 stays 0
    // The header extension area after it holds only the end marker (zeros).
    return pwrite_all(fd, header, 0);
}

} // namespace

Status export_qcow2(CopySource const& source, std::string const& path, Qcow2WriteOptions const& options, ProgressFn const& progress)
{
    if (options.cluster_bits < 9 || options.cluster_bits > 21)
        return make_error(ErrorKind::Usage, "qcow2 export: cluster size must be 512 B..2 MiB");
    BlockBackend& backend = *source.backend;
    std::uint64_t size = backend.size();
    Layout lay;
    lay.cs = 1ULL << options.cluster_bits;
    lay.l2_entries = lay.cs / 8;
    std::uint64_t l1_size = (size + lay.cs * lay.l2_entries - 1) / (lay.cs * lay.l2_entries);
    if (l1_size * 8 > kMaxL1Bytes)
        return make_error(ErrorKind::Usage, "qcow2 export: the disk is too large for this cluster size");
    lay.l1_size = static_cast<std::uint32_t>(l1_size);
    lay.next = 1 + std::max<std::uint64_t>(1, (l1_size * 8 + lay.cs - 1) / lay.cs);

    STRATA_TRY(file, AtomicFile::create(path));
    std::size_t chunk = static_cast<std::size_t>(std::max<std::uint64_t>(kChunk, lay.cs));
    std::vector<std::byte> buf(chunk);
    for (std::uint64_t pos = 0; pos < size;) {
        std::uint64_t n = std::min<std::uint64_t>(chunk, size - pos);
        if (source.status) {
            STRATA_TRY(ext, source.status(pos, n));
            if (ext.kind == RangeKind::Zero) {
                // Skip whole clusters only; a partial one is read below with its neighbours.
                std::uint64_t skip = std::min(ext.length, n) / lay.cs * lay.cs;
                if (skip > 0) {
                    pos += skip;
                    if (progress)
                        progress(pos, size);
                    continue;
                }
            } else {
                n = std::max(std::min(n, (pos + ext.length + lay.cs - 1) / lay.cs * lay.cs - pos), std::min<std::uint64_t>(n, lay.cs));
            }
        }
        auto data = std::span(buf).first(static_cast<std::size_t>(n));
        STRATA_TRY(read_sync(backend, pos, data));
        // Pad a partial last cluster with zeros.
        std::size_t padded = static_cast<std::size_t>((n + lay.cs - 1) / lay.cs * lay.cs);
        std::memset(buf.data() + n, 0, padded - n);
        STRATA_TRY(write_chunk(file.fd(), lay, pos, std::span<std::byte const>(buf).first(padded)));
        pos += n;
        if (progress)
            progress(pos, size);
    }
    STRATA_TRY(write_metadata(file.fd(), lay, size, options.cluster_bits));
    return file.commit();
}

} // namespace strata
