// Machine images as portable archives (imaging/archive/ARCHIVE.md): export and import.
#include "store/machine_image_store.h"

#include "imaging/archive/archive_reader.h"
#include "imaging/archive/archive_writer.h"
#include "store/artifacts.h"
#include "store/layer_transfer.h"
#include "imaging/layer/layer.h"
#include "store/store.h"

#include <cstring>
#include <unistd.h>

namespace strata {

namespace {


} // namespace

Status export_machine_image(Store& store, std::string const& name, std::string const& file, int level, ProgressFn const& progress)
{
    STRATA_TRY(ensure_record_dirs(store.root()));
    MachineImageRecord m;
    std::vector<std::pair<std::string, std::vector<std::byte>>> blobs;
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    std::vector<std::vector<std::unique_ptr<Layer>>> opened;
    {
        // Open every layer under the lock: once open, a concurrent delete and
        // collection cannot take the data away from the export.
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        STRATA_TRY(record, load_machine_image(held, name));
        m = record;
        for (auto const& digest : boot_digests(m.spec.boot)) {
            STRATA_TRY(bytes, read_artifact(held, digest));
            blobs.emplace_back("artifact-" + digest, std::move(bytes));
        }
        for (auto const& d : m.disks) {
            STRATA_TRY(store.require_complete(d.layers, "export machine image '" + name + "'"));
            std::vector<std::unique_ptr<Layer>> layers;
            for (auto const& id : d.layers) {
                STRATA_TRY(l, Layer::open(store.layer_path(id), LayerOpen::ReadOnly, *engine, LayerOptions { .cache = CacheMode::Writeback }));
                layers.push_back(std::move(l));
            }
            opened.push_back(std::move(layers));
        }
    }
    STRATA_TRY(writer, ArchiveWriter::create(file, ArchiveOptions { level, 4 << 20, 0 }));
    for (std::size_t i = 0; i < m.disks.size(); ++i) {
        if (m.disks[i].scratch)
            continue;
        std::vector<LayerInput> inputs;
        for (auto const& l : opened[i])
            inputs.push_back(archive_layer_input(*l));
        STRATA_TRY(writer->add_disk("disk-" + m.disks[i].id, inputs, progress));
    }
    for (auto const& [blob_name, bytes] : blobs)
        STRATA_TRY(writer->add_blob(blob_name, bytes));
    // Archives carry the disks only so far: a running-state image's memory and
    // state stay behind, so the exported record says "stopped".
    MachineImageRecord exported = m;
    exported.running = false;
    return writer->finish(nlohmann::json { { "kind", "machine-image" }, { "name", m.name }, { "record", machine_image_json(exported) } });
}

Result<MachineImageRecord> import_machine_image(Store& store, std::string const& name, std::string const& file, ProgressFn const& progress)
{
    STRATA_TRY(check_object_name(name));
    STRATA_TRY(ensure_record_dirs(store.root()));
    {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        if (read_record(held.root(), RecordKind::MachineImage, name))
            return make_error(ErrorKind::Exists, "a machine-image named '" + name + "' already exists");
    }
    STRATA_TRY(reader, ArchiveReader::open(file));
    STRATA_TRY(reader->verify(progress));
    auto const& meta = reader->manifest().metadata;
    if (!meta.is_object() || meta.value("kind", "") != "machine-image" || !meta.contains("record"))
        return make_error(ErrorKind::BadInput, "archive '" + file + "' does not hold a machine image");
    auto parsed = parse_machine_image_json(meta["record"]);
    if (!parsed)
        return parsed.error().context("archive '" + file + "'");
    MachineImageRecord m = parsed.value();
    m.name = name;
    m.source = "import";
    m.running = false; // no memory comes with an archive (see export)

    // Everything is read and checked into tmp/ first (no lock: a long copy).
    TempLayerFiles temps;
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    for (auto& d : m.disks) {
        if (d.scratch)
            continue;
        auto const* entry = reader->find("disk-" + d.id);
        if (entry == nullptr || entry->type != archive::EntryType::Disk)
            return make_error(ErrorKind::BadInput, "archive '" + file + "' lacks the disk 'disk-" + d.id + "'");
        if (entry->size != d.size)
            return make_error(ErrorKind::BadInput, "archive '" + file + "': disk '" + d.id + "' has the wrong size");
        d.layers.clear();
        for (std::size_t i = 0; i < entry->layers.size(); ++i) {
            auto const& rec = entry->layers[i];
            LayerId id = LayerId::random();
            std::string path = store.root() + "/tmp/" + id.to_string();
            temps.paths.push_back(path);
            STRATA_TRY(layer, Layer::create(path, rec.size, id, *engine, LayerOptions { .cache = CacheMode::Writeback }));
            BlockAssembler out(*layer, i != 0);
            STRATA_TRY(reader->read_layer(
                rec, [&](std::uint64_t off, std::span<std::byte const> data) { return out.put(off, data); },
                [&](std::uint64_t off, std::uint64_t len) { return out.zero(off, len); }));
            STRATA_TRY(out.flush());
            STRATA_TRY(layer->freeze(true));
            d.layers.push_back(id);
        }
        d.layer_name.clear(); // named afresh in this store
    }
    std::vector<std::pair<std::string, std::vector<std::byte>>> blobs;
    for (auto const& digest : boot_digests(m.spec.boot)) {
        auto const* entry = reader->find("artifact-" + digest);
        if (entry == nullptr || entry->type != archive::EntryType::Blob)
            return make_error(ErrorKind::BadInput, "archive '" + file + "' lacks the boot artifact " + digest.substr(0, 12));
        std::vector<std::byte> bytes(static_cast<std::size_t>(entry->size));
        STRATA_TRY(reader->read_blob(*entry, [&](std::uint64_t off, std::span<std::byte const> data) -> Status {
            if (off > bytes.size() || data.size() > bytes.size() - off)
                return make_error(ErrorKind::BadInput, "archive: blob data out of range");
            std::memcpy(bytes.data() + off, data.data(), data.size());
            return ok();
        }));
        blobs.emplace_back(digest, std::move(bytes));
    }

    // Into the store under the exclusive lock: layers, artifacts, then the record.
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    std::vector<std::string> moved;
    auto undo = [&] {
        for (auto const& p : moved)
            ::unlink(p.c_str());
    };
    for (auto const& d : m.disks)
        for (auto const& id : d.layers) {
            std::string to = store.layer_path(id);
            if (::rename((store.root() + "/tmp/" + id.to_string()).c_str(), to.c_str()) != 0) {
                undo();
                return errno_error("move an imported layer into the store");
            }
            moved.push_back(to);
        }
    temps.paths.clear();
    if (!moved.empty())
        STRATA_TRY(fsync_parent_dir(moved.front()));
    for (auto const& [digest, bytes] : blobs) {
        if (auto put = put_artifact_bytes(held, bytes, digest); !put) {
            undo();
            return put.error();
        }
    }
    m.created = m.created.empty() ? utc_now() : m.created;
    if (auto recorded = record_machine_image(held, m); !recorded) {
        undo();
        (void)gc_artifacts(held);
        return recorded.error();
    }
    return load_machine_image(held, name);
}

} // namespace strata
