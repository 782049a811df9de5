// Store: images — created from a disk or snapshot (O(1)), imported from raw,
// qcow2, a strata layer or an archive (verified, written under tmp/ and moved
// into layers/ only when complete), exported as archive, raw, qcow2 or strata.
#include "store/store.h"

#include "base/fd.h"
#include "imaging/archive/archive_reader.h"
#include "store/layer_transfer.h"
#include "imaging/archive/archive_writer.h"
#include "imaging/qcow2/qcow2_reader.h"
#include "imaging/qcow2/qcow2_writer.h"

#include <cstring>
#include <memory>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

BlockStatusFn chain_block_status(Chain& chain)
{
    return [&chain](std::uint64_t offset, std::uint64_t max) -> Result<RangeStatus> {
        auto l = chain.merged_map().lookup(offset / kBlockSize);
        std::uint64_t in = offset % kBlockSize;
        std::uint64_t run = l.run > (max >> kBlockShift) + 2 ? max + in : l.run * kBlockSize;
        std::uint64_t len = std::min(max, run - in);
        return RangeStatus { mapval::kind(l.value) == MapKind::Data ? RangeKind::Data : RangeKind::Zero, len };
    };
}

Result<BlockStatusFn> image_block_status(BlockBackend& backend, ImageFormat format, std::string const& path)
{
    if (format == ImageFormat::Qcow2) {
        auto* q = dynamic_cast<Qcow2Reader*>(&backend);
        if (q != nullptr)
            return BlockStatusFn([q](std::uint64_t off, std::uint64_t max) { return q->block_status(off, max); });
    }
    if (format == ImageFormat::Strata) {
        auto* c = dynamic_cast<Chain*>(&backend);
        if (c != nullptr)
            return chain_block_status(*c);
    }
    auto fd = std::make_shared<Fd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd->valid() || ::fstat(fd->get(), &st) != 0)
        return errno_error("open '" + path + "'");
    auto size = static_cast<std::uint64_t>(st.st_size);
    return BlockStatusFn([fd, size](std::uint64_t off, std::uint64_t max) { return file_block_status(fd->get(), size, off, max); });
}

// Copies the data ranges of source, in order, to put(offset, bytes).
static Status copy_data(CopySource const& source, ProgressFn const& progress,
    std::function<Status(std::uint64_t, std::span<std::byte const>)> const& put)
{
    std::uint64_t size = source.backend->size();
    std::vector<std::byte> buf(4 << 20);
    for (std::uint64_t pos = 0; pos < size;) {
        std::uint64_t max = std::min<std::uint64_t>(buf.size(), size - pos);
        RangeStatus range { RangeKind::Data, max };
        if (source.status) {
            STRATA_TRY(r, source.status(pos, max));
            range = r;
        }
        std::uint64_t n = std::clamp<std::uint64_t>(range.length, 512, max) / 512 * 512;
        if (range.kind == RangeKind::Data) {
            auto part = std::span(buf).first(static_cast<std::size_t>(n));
            STRATA_TRY(read_sync(*source.backend, pos, part));
            STRATA_TRY(put(pos, part));
        }
        pos += n;
        if (progress)
            progress(pos, size);
    }
    return ok();
}

Status copy_to_new_layer(CopySource const& source, std::string const& path, LayerId id, bool freeze, ProgressFn const& progress)
{
    STRATA_TRY(engine, make_engine(EngineKind::Uring, 64));
    STRATA_TRY(layer, Layer::create(path, source.backend->size(), id, *engine));
    BlockAssembler out(*layer, false);
    Status status = copy_data(source, progress, [&](std::uint64_t off, std::span<std::byte const> d) { return out.put(off, d); });
    if (status)
        status = out.flush();
    if (status)
        status = freeze ? layer->freeze(true) : layer->flush();
    if (!status) {
        layer.reset();
        ::unlink(path.c_str());
    }
    return status;
}

Status copy_to_raw(CopySource const& source, std::string const& path, ProgressFn const& progress)
{
    STRATA_TRY(out, AtomicFile::create(path));
    STRATA_TRY(copy_data(source, progress, [&](std::uint64_t off, std::span<std::byte const> d) -> Status {
        if (is_zero(d))
            return ok();
        return pwrite_all(out.fd(), d, off);
    }));
    if (::ftruncate(out.fd(), static_cast<off_t>(source.backend->size())) != 0)
        return errno_error("size '" + path + "'");
    return out.commit();
}

Result<ObjectManifest> Store::create_image(std::string const& name, ObjectKind source_kind, std::string const& source)
{
    STRATA_TRY(check_object_name(name));
    STRATA_TRY(held, lock(true));
    (void)held;
    if (load(ObjectKind::Image, name))
        return make_error(ErrorKind::Exists, "an image named '" + name + "' already exists");
    STRATA_TRY(from, load(source_kind, source));
    if (source_kind == ObjectKind::Disk) {
        STRATA_TRY(frozen, freeze_top(from));
        from.layers = frozen;
    } else if (source_kind != ObjectKind::Snapshot) {
        return make_error(ErrorKind::Usage, "an image is created from a disk or a snapshot");
    }
    ObjectManifest m { ObjectKind::Image, name, from.size, from.layers, utc_now(),
        std::string(kind_name(source_kind)) + ":" + source, {}, {}, nlohmann::json::object() };
    STRATA_TRY(save(m, true));
    return m;
}

Result<std::vector<LayerId>> Store::import_into_layers(std::string const& file, ImportOptions const& options)
{
    ImageFormat format = ImageFormat::Raw;
    if (options.format) {
        format = *options.format;
    } else {
        STRATA_TRY(detected, detect_format(file));
        format = detected;
    }
    TempLayerFiles temps;
    std::vector<LayerId> ids;
    STRATA_TRY(engine, make_engine(EngineKind::Uring, 64));
    auto new_layer = [&](std::uint64_t size) -> Result<std::unique_ptr<Layer>> {
        LayerId id = LayerId::random();
        std::string path = m_root + "/tmp/" + id.to_string();
        temps.paths.push_back(path);
        ids.push_back(id);
        return Layer::create(path, size, id, *engine);
    };

    if (format == ImageFormat::Archive) {
        STRATA_TRY(reader, ArchiveReader::open(file));
        STRATA_TRY(reader->verify(options.progress));
        archive::Entry const* disk = nullptr;
        for (auto const& e : reader->manifest().entries)
            if (e.type == archive::EntryType::Disk && disk == nullptr)
                disk = &e;
        if (disk == nullptr)
            return make_error(ErrorKind::BadInput, "archive '" + file + "' holds no disk");
        for (auto const& rec : disk->layers) {
            STRATA_TRY(layer, new_layer(rec.size));
            BlockAssembler out(*layer, &rec != &disk->layers.front());
            STRATA_TRY(reader->read_layer(
                rec, [&](std::uint64_t off, std::span<std::byte const> d) { return out.put(off, d); },
                [&](std::uint64_t off, std::uint64_t len) -> Status {
                    std::uint64_t first = (off + kBlockSize - 1) / kBlockSize, end = (off + len) / kBlockSize;
                    if (end > first)
                        layer->set_zero(first, end - first);
                    return ok();
                }));
            STRATA_TRY(out.flush());
            STRATA_TRY(layer->freeze(true));
        }
    } else {
        OpenImageOptions oo;
        oo.cache = CacheMode::Writeback;
        oo.engine = EngineKind::Sync;
        STRATA_TRY(source, open_image(file, format, oo));
        STRATA_TRY(status, image_block_status(*source, format, file));
        LayerId id = LayerId::random();
        std::string path = m_root + "/tmp/" + id.to_string();
        temps.paths.push_back(path);
        ids.push_back(id);
        STRATA_TRY(copy_to_new_layer(CopySource { source.get(), status }, path, id, true, options.progress));
    }
    temps.paths.clear(); // the caller moves the files into layers/ (tmp/ names are the IDs)
    return ids;
}

Result<ObjectManifest> Store::import_image(std::string const& name, std::string const& file, ImportOptions const& options)
{
    STRATA_TRY(check_object_name(name));
    {
        STRATA_TRY(held, lock(false));
        (void)held;
        if (load(ObjectKind::Image, name))
            return make_error(ErrorKind::Exists, "an image named '" + name + "' already exists");
    }
    // The long copy runs without the store lock, into tmp/.
    STRATA_TRY(ids, import_into_layers(file, options));
    TempLayerFiles temps;
    for (auto const& id : ids)
        temps.paths.push_back(m_root + "/tmp/" + id.to_string());
    STRATA_TRY(held, lock(true));
    (void)held;
    std::uint64_t size = 0;
    {
        STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
        STRATA_TRY(top, Layer::open(temps.paths.back(), LayerOpen::ReadOnly, *engine));
        size = top->size();
    }
    for (auto const& id : ids) {
        std::string from = m_root + "/tmp/" + id.to_string();
        if (::rename(from.c_str(), layer_path(id).c_str()) != 0)
            return errno_error("move imported layer into the store");
    }
    STRATA_TRY(fsync_parent_dir(layer_path(ids.front())));
    temps.paths.clear();
    ObjectManifest m { ObjectKind::Image, name, size, ids, utc_now(), options.source, {}, options.description, nlohmann::json::object() };
    auto saved = save(m, true);
    if (!saved) {
        (void)gc_locked();
        return saved.error();
    }
    return m;
}

Status Store::export_image(std::string const& name, std::string const& file, ExportOptions const& options)
{
    STRATA_TRY(m, get(ObjectKind::Image, name));
    STRATA_TRY(require_complete(m.layers, "export image '" + name + "'"));
    std::vector<std::string> paths;
    for (auto const& id : m.layers)
        paths.push_back(layer_path(id));
    if (options.format == ExportFormat::Archive) {
        STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
        std::vector<std::unique_ptr<Layer>> layers;
        std::vector<LayerInput> inputs;
        for (auto const& p : paths) {
            STRATA_TRY(layer, Layer::open(p, LayerOpen::ReadOnly, *engine, LayerOptions { .cache = CacheMode::Writeback }));
            inputs.push_back(archive_layer_input(*layer));
            layers.push_back(std::move(layer));
        }
        STRATA_TRY(writer, ArchiveWriter::create(file, ArchiveOptions { options.level, options.chunk_size, 0 }));
        STRATA_TRY(writer->add_disk("disk", inputs, options.progress));
        return writer->finish({ { "kind", "image" }, { "name", m.name }, { "size", m.size }, { "description", m.description },
            { "labels", m.labels }, { "created", m.created } });
    }
    STRATA_TRY(chain, Chain::open(paths, ChainOptions { CacheMode::Writeback, EngineKind::Sync, 32, true }));
    CopySource source { chain.get(), chain_block_status(*chain) };
    if (options.format == ExportFormat::Qcow2)
        return export_qcow2(source, file, {}, options.progress);
    if (options.format == ExportFormat::Strata) {
        std::string tmp = file + ".strata-tmp";
        ::unlink(tmp.c_str());
        STRATA_TRY(copy_to_new_layer(source, tmp, LayerId::random(), true, options.progress));
        if (::rename(tmp.c_str(), file.c_str()) != 0)
            return errno_error("rename '" + tmp + "' to '" + file + "'");
        return fsync_parent_dir(file);
    }
    return copy_to_raw(source, file, options.progress);
}

} // namespace strata
