// ArchiveReader: opens a portable archive (imaging/archive/ARCHIVE.md), checks its
// trailer and manifest, verifies the whole-file SHA-256, and streams each disk
// layer's or blob's content chunk by chunk, checking every chunk's SHA-256 after
// decompression. Importers verify() first and write into temporary files that
// they rename only when everything checked out, so a corrupted archive imports
// nothing.
//
// Threading: one thread at a time.
#pragma once

#include "base/fd.h"
#include "imaging/archive/archive_format.h"
#include "imaging/store_io.h"

#include <functional>
#include <memory>
#include <string>

namespace strata {

class ArchiveReader {
public:
    using DataSink = std::function<Status(std::uint64_t offset, std::span<std::byte const> data)>;
    using ZeroSink = std::function<Status(std::uint64_t offset, std::uint64_t length)>;

    [[nodiscard]] static Result<std::unique_ptr<ArchiveReader>> open(std::string const& path);

    archive::Manifest const& manifest() const { return m_manifest; }
    archive::Entry const* find(std::string const& name) const;
    // Reads the whole file and compares its SHA-256 with the trailer's.
    [[nodiscard]] Status verify(ProgressFn const& progress = {});
    // Streams a layer: data for each chunk (in offset order), zero for each zero range.
    [[nodiscard]] Status read_layer(archive::LayerRecord const& layer, DataSink const& data, ZeroSink const& zero);
    [[nodiscard]] Status read_blob(archive::Entry const& blob, DataSink const& data);

    // True when bytes start with the archive magic.
    static bool has_magic(std::span<std::byte const> bytes);

private:
    ArchiveReader() = default;
    [[nodiscard]] Status read_chunk(archive::Chunk const& chunk, std::vector<std::byte>& out);

    Fd m_fd;
    std::string m_path;
    std::uint64_t m_file_size { 0 };
    archive::Trailer m_trailer;
    archive::Manifest m_manifest;
    std::vector<std::byte> m_packed;
    std::vector<std::byte> m_raw;
};

} // namespace strata
