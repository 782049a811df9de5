#include "imaging/archive/archive_writer.h"

#include "base/fd.h"
#include "base/sha256.h"
#include "imaging/archive/archive_compress.h"


#include <algorithm>
#include <optional>
#include <set>
#include <thread>

namespace strata {

using namespace archive;

struct ArchiveWriter::State {
    ArchiveOptions options;
    std::optional<AtomicFile> file;
    Sha256Hasher hash;
    std::uint64_t end { 0 }; // bytes written
    Manifest manifest;
    std::set<std::string> names;
    std::unique_ptr<ChunkCompressor> compressor;

    Status append(std::span<std::byte const> bytes)
    {
        STRATA_TRY(pwrite_all(file->fd(), bytes, end));
        hash.update(bytes);
        end += bytes.size();
        return ok();
    }

    // Writes one finished job and records its chunk.
    Status write_job(std::unique_ptr<ChunkJob> job, std::vector<Chunk>& chunks)
    {
        if (!job->error.empty())
            return make_error(ErrorKind::Internal, "archive: " + job->error);
        Chunk c { job->offset, job->length, end, job->packed_length, job->digest };
        STRATA_TRY(append(std::span<std::byte const>(job->packed.data(), job->packed_length)));
        chunks.push_back(c);
        compressor->recycle(std::move(job));
        return ok();
    }

    Status drain(std::vector<Chunk>& chunks, std::size_t keep)
    {
        while (compressor->queued() > keep) {
            auto job = compressor->pop();
            STRATA_TRY(write_job(std::move(job), chunks));
        }
        return ok();
    }

    Status check_new_name(std::string const& name)
    {
        if (name.empty() || name.size() > kMaxNameLength || name.find('/') != std::string::npos)
            return make_error(ErrorKind::Usage, "archive: entry name '" + name + "' is empty, too long or contains '/'");
        if (!names.insert(name).second)
            return make_error(ErrorKind::Exists, "archive: entry '" + name + "' already added");
        return ok();
    }
};

LayerInput layer_input_from(CopySource const& source, std::string id)
{
    LayerInput in;
    in.id = std::move(id);
    in.size = source.backend->size();
    BlockBackend* backend = source.backend;
    in.read = [backend](std::uint64_t offset, std::span<std::byte> out) { return read_sync(*backend, offset, out); };
    BlockStatusFn status = source.status;
    in.status = [status](std::uint64_t offset, std::uint64_t max) -> Result<LayerRange> {
        if (!status)
            return LayerRange { LayerRangeKind::Data, max };
        STRATA_TRY(st, status(offset, max));
        return LayerRange { st.kind == RangeKind::Data ? LayerRangeKind::Data : LayerRangeKind::Unmapped, st.length };
    };
    return in;
}

ArchiveWriter::~ArchiveWriter() = default;

Result<std::unique_ptr<ArchiveWriter>> ArchiveWriter::create(std::string const& path, ArchiveOptions const& options)
{
    if (options.chunk_size < 4096 || options.chunk_size > kMaxChunkSize || options.chunk_size % 4096 != 0)
        return make_error(ErrorKind::Usage, "archive: chunk size must be a multiple of 4 KiB up to 64 MiB");
    std::unique_ptr<ArchiveWriter> w(new ArchiveWriter());
    w->m = std::make_unique<State>();
    State& s = *w->m;
    s.options = options;
    s.manifest.chunk_size = options.chunk_size;
    STRATA_TRY(file, AtomicFile::create(path));
    s.file.emplace(std::move(file));
    unsigned workers = options.workers != 0 ? options.workers : std::max(1U, std::thread::hardware_concurrency());
    s.compressor = std::make_unique<ChunkCompressor>(workers, options.level, options.chunk_size);
    auto header = encode_header();
    STRATA_TRY(s.append(header));
    return w;
}

std::uint64_t ArchiveWriter::bytes_written() const
{
    return m->end;
}

Status ArchiveWriter::add_disk(std::string const& name, std::vector<LayerInput> const& layers, ProgressFn const& progress)
{
    State& s = *m;
    STRATA_TRY(s.check_new_name(name));
    if (layers.empty() || layers.size() > kMaxLayersPerDisk)
        return make_error(ErrorKind::Usage, "archive: a disk needs 1.." + std::to_string(kMaxLayersPerDisk) + " layers");
    Entry entry { name, EntryType::Disk, layers.back().size, {}, {}, {} };
    std::uint64_t total = 0, done = 0;
    for (auto const& l : layers)
        total += l.size;
    std::uint64_t const cs = s.options.chunk_size;
    for (std::size_t li = 0; li < layers.size(); ++li) {
        LayerInput const& in = layers[li];
        bool bottom = li == 0;
        LayerRecord rec { in.id, in.size, {}, {} };
        auto add_zero = [&](std::uint64_t off, std::uint64_t len) {
            if (bottom)
                return; // zeros are what the bottom layer's holes read as anyway
            if (!rec.zeros.empty() && rec.zeros.back().offset + rec.zeros.back().length == off)
                rec.zeros.back().length += len;
            else
                rec.zeros.push_back(ZeroRange { off, len });
        };
        for (std::uint64_t pos = 0; pos < in.size;) {
            STRATA_TRY(range, in.status(pos, in.size - pos));
            std::uint64_t len = std::clamp<std::uint64_t>(range.length, 1, in.size - pos);
            if (range.kind == LayerRangeKind::Zero)
                add_zero(pos, len);
            for (std::uint64_t at = pos; range.kind == LayerRangeKind::Data && at < pos + len;) {
                // Chunks never cross a multiple of the chunk size.
                std::uint64_t n = std::min(pos + len, (at / cs + 1) * cs) - at;
                auto job = s.compressor->take_free();
                job->offset = at;
                job->length = static_cast<std::size_t>(n);
                STRATA_TRY(in.read(at, std::span(job->raw).first(job->length)));
                if (is_zero(std::span<std::byte const>(job->raw.data(), job->length))) {
                    add_zero(at, n);
                    s.compressor->recycle(std::move(job));
                } else {
                    s.compressor->push(std::move(job));
                    STRATA_TRY(s.drain(rec.chunks, s.compressor->capacity() - 1));
                }
                at += n;
                if (progress)
                    progress(done + at, total);
            }
            pos += len;
        }
        STRATA_TRY(s.drain(rec.chunks, 0));
        done += in.size;
        if (progress)
            progress(done, total);
        entry.layers.push_back(std::move(rec));
    }
    s.manifest.entries.push_back(std::move(entry));
    return ok();
}

Status ArchiveWriter::add_blob(std::string const& name, std::span<std::byte const> data)
{
    State& s = *m;
    STRATA_TRY(s.check_new_name(name));
    Entry entry { name, EntryType::Blob, data.size(), {}, {}, sha256(data) };
    for (std::uint64_t at = 0; at < data.size();) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(s.options.chunk_size, data.size() - at));
        auto job = s.compressor->take_free();
        job->offset = at;
        job->length = n;
        std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(at), n, job->raw.begin());
        s.compressor->push(std::move(job));
        STRATA_TRY(s.drain(entry.chunks, s.compressor->capacity() - 1));
        at += n;
    }
    STRATA_TRY(s.drain(entry.chunks, 0));
    s.manifest.entries.push_back(std::move(entry));
    return ok();
}

Status ArchiveWriter::finish(nlohmann::json metadata)
{
    State& s = *m;
    s.manifest.metadata = std::move(metadata);
    std::string text = encode_manifest(s.manifest);
    if (text.size() > kMaxManifestBytes)
        return make_error(ErrorKind::Unsupported, "archive: the manifest is larger than 64 MiB (use a larger chunk size)");
    Trailer t { s.end, text.size(), {} };
    // SAFETY: the manifest text is viewed as the bytes it is made of.
    STRATA_TRY(s.append(std::span(reinterpret_cast<std::byte const*>(text.data()), text.size())));
    auto trailer = encode_trailer(t);
    s.hash.update(trailer.data(), kTrailerDigestOffset);
    t.digest = Sha256 { s.hash.finish() };
    trailer = encode_trailer(t);
    STRATA_TRY(pwrite_all(s.file->fd(), trailer, s.end));
    s.end += trailer.size();
    return s.file->commit();
}

} // namespace strata
