// The imaging/qcow2/ folder: qcow2 as a foreign format, read (this reader, with
// qcow2_decompress.h) for import and written (qcow2_writer.h) for export; the
// header and table layouts are in qcow2_format.h.
//
// Qcow2Reader: strata's own read-only qcow2 reader (v2 and v3, extended L2
// subclusters, zlib and zstd compressed clusters, backing chains), served as a
// BlockBackend so import, convert and compare treat it like any other disk.
// It exists for import: strata never writes qcow2 in place (see qcow2_writer.h for
// export) and never keeps a qcow2 backing path.
//
// Backing files. A qcow2 names its backing file by host path, which is untrusted
// input (the hazard of GHSA-jmr4-g2hv-mjj6). The rule strata applies:
//   * If the caller passes Qcow2OpenOptions::backing (the user's explicit choice),
//     that file is the backing of the top image, wherever it is.
//   * Otherwise the stored name is resolved relative to the directory of the image
//     that names it, and its canonical path (symlinks resolved) must lie inside
//     that directory: absolute paths elsewhere and "../" escapes are refused.
//   * A chain is at most kMaxBackingDepth images deep and may not contain one file
//     twice (loops are refused).
//   * The backing format comes from the header extension; without one, a file with
//     the qcow2 magic is read as qcow2 and anything else as raw.
// Hostile files (offsets past EOF, misaligned or overlapping tables, huge sizes,
// bad compressed data) give BadInput errors; allocations are capped (the L1 table
// by kMaxL1Bytes, the L2 cache by kL2CacheBytes).
//
// Threading: as BlockBackend: one thread at a time. Requests complete inside
// submit() (synchronous preads); completions are handed back by reap().
#pragma once

#include "base/fd.h"
#include "imaging/block_backend.h"
#include "imaging/qcow2/qcow2_format.h"
#include "imaging/store_io.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace strata {

struct Qcow2OpenOptions {
    // An explicit backing file for the top image, replacing the stored name.
    std::optional<std::string> backing;
    // The format of the explicit backing ("raw" or "qcow2"); probed when empty.
    std::optional<std::string> backing_format;
};

class Qcow2Reader final : public BlockBackend {
public:
    static constexpr std::uint64_t kL2CacheBytes = 16ULL << 20;

    [[nodiscard]] static Result<std::unique_ptr<Qcow2Reader>> open(std::string const& path, Qcow2OpenOptions const& options = {});
    ~Qcow2Reader() override;

    std::uint64_t size() const override { return m_size; }
    bool read_only() const override { return true; }
    unsigned queue_depth() const override { return 64; }
    [[nodiscard]] Status submit(BlockRequest const& request) override;
    [[nodiscard]] Status kick() override { return ok(); }
    int completion_fd() const override { return m_event.get(); }
    std::size_t reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait) override;

    // Reads buf.size() bytes at offset (anywhere inside size()).
    [[nodiscard]] Status read(std::uint64_t offset, std::span<std::byte> buf);
    // What the chain holds at offset, for at most max_length bytes; lets import and
    // export skip zero ranges without reading them.
    [[nodiscard]] Result<RangeStatus> block_status(std::uint64_t offset, std::uint64_t max_length);

    qcow2::Header const& header() const { return m_header; }
    // How many images the chain holds, this one included.
    unsigned chain_depth() const;

private:
    struct Backing;
    struct Chain;
    Qcow2Reader() = default;
    [[nodiscard]] static Result<std::unique_ptr<Qcow2Reader>> open_in_chain(std::string const& path, Qcow2OpenOptions const& options, Chain& chain);
    [[nodiscard]] Status open_backing(std::string const& image_path, Qcow2OpenOptions const& options, Chain& chain);
    [[nodiscard]] Result<std::vector<std::byte> const*> l2_table(std::uint64_t l2_offset);
    [[nodiscard]] Status read_cluster(std::uint64_t offset, std::span<std::byte> buf);
    [[nodiscard]] Status read_compressed(std::uint64_t entry, std::uint64_t in_cluster, std::span<std::byte> buf);
    [[nodiscard]] Status read_backing(std::uint64_t offset, std::span<std::byte> buf);
    [[nodiscard]] Status check_host_range(std::uint64_t host, std::uint64_t length, char const* what) const;
    [[nodiscard]] Result<RangeStatus> local_status(std::uint64_t offset, std::uint64_t max_length, bool& from_backing);
    [[nodiscard]] Result<RangeStatus> single_status(std::uint64_t offset, std::uint64_t max_length);

    Fd m_fd;
    Fd m_event;
    std::string m_path;
    std::uint64_t m_file_size { 0 };
    std::uint64_t m_size { 0 };
    qcow2::Header m_header;
    std::vector<std::uint64_t> m_l1;
    std::unordered_map<std::uint64_t, std::vector<std::byte>> m_l2_cache;
    std::uint64_t m_cached_compressed { ~0ULL }; // L2 entry of the cluster in m_decompressed
    std::vector<std::byte> m_decompressed;
    std::vector<std::byte> m_compressed_in;
    std::unique_ptr<Backing> m_backing;
    std::deque<BlockCompletion> m_done;
};

} // namespace strata
