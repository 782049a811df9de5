// ArchiveWriter: writes a portable archive (imaging/archive/ARCHIVE.md) — disks as chains
// of layers and blobs — compressing chunks with zstd on worker threads
// (ChunkCompressor) while this thread reads the sources and appends to the file.
// Zero chunks are never stored. The file is built under a temporary name and
// renamed into place by finish(), so an interrupted export leaves nothing.
//
// Threading: one thread calls the writer; it runs its own compression workers.
#pragma once

#include "base/result.h"
#include "imaging/archive/archive_format.h"
#include "imaging/store_io.h"

#include <functional>
#include <memory>
#include <string>

namespace strata {

struct ArchiveOptions {
    int level { 3 };                       // zstd level; 1-3 are the fast ones
    std::size_t chunk_size { 4 << 20 };    // bytes of the disk per chunk
    unsigned workers { 0 };                // 0: one per online CPU
};

// What one layer of a disk holds at an offset, as the archive sees it.
enum class LayerRangeKind {
    Data,     // bytes this layer holds (read them with LayerInput::read)
    Zero,     // zeros that hide lower layers
    Unmapped, // nothing here: lower layers show through (zeros in the bottom layer)
};

struct LayerRange {
    LayerRangeKind kind;
    std::uint64_t length;
};

// One layer of a disk to archive: its own content, not the chain's.
struct LayerInput {
    std::string id;
    std::uint64_t size { 0 };
    std::function<Status(std::uint64_t offset, std::span<std::byte> out)> read;
    std::function<Result<LayerRange>(std::uint64_t offset, std::uint64_t max_length)> status;
};

// A whole disk seen as one bottom layer (its Zero ranges are simply not stored).
LayerInput layer_input_from(CopySource const& source, std::string id);

class ArchiveWriter {
public:
    [[nodiscard]] static Result<std::unique_ptr<ArchiveWriter>> create(std::string const& path, ArchiveOptions const& options = {});
    ~ArchiveWriter();

    // Adds a disk entry whose layers are given bottom first.
    [[nodiscard]] Status add_disk(std::string const& name, std::vector<LayerInput> const& layers, ProgressFn const& progress = {});
    [[nodiscard]] Status add_blob(std::string const& name, std::span<std::byte const> data);
    // Writes the manifest (with metadata: what the archive is) and the trailer,
    // then makes the file durable under its final name.
    [[nodiscard]] Status finish(nlohmann::json metadata);
    // Bytes written so far.
    std::uint64_t bytes_written() const;

private:
    struct State;
    ArchiveWriter() = default;
    std::unique_ptr<State> m;
};

} // namespace strata
