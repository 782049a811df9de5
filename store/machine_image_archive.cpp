// Machine images as portable archives (imaging/archive/ARCHIVE.md): export and import.
// A running-state image also carries its saved machine: the state file as the
// blob "state" and its memory as the disk entry "memory" whose layers are the
// image's memory layers (store/memory_chain.h), bottom first — a whole layer's
// holes and a differential layer's pages outside its list are not stored, the
// rest is zstd-compressed with a SHA-256 per chunk — and the chain (checksums,
// page lists) in the archive's metadata as "memory_chain". Import rebuilds the
// folder in tmp/, has the caller check it (the state decodes, every layer is
// the guest's RAM size with its checksum, the top one the state's) and only
// then moves it into the store, before the record.
#include "store/machine_image_store.h"

#include "imaging/archive/archive_reader.h"
#include "imaging/archive/archive_writer.h"
#include "store/artifacts.h"
#include "store/layer_transfer.h"
#include "imaging/layer/layer.h"
#include "store/memory_chain.h"
#include "store/store.h"
#include "base/file.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace strata {

namespace {

constexpr std::uint64_t max_state_bytes = 64ull << 20;

// A running-state image's saved machine, opened under the record lock: once
// open, deleting the image cannot take the data away from the export.
struct OpenedMachineState {
    std::vector<std::byte> state;
    std::optional<std::vector<MemoryChainLayer>> chain; // none: one whole "memory"
    std::vector<Fd> files;                              // one per layer, bottom first
    std::uint64_t size { 0 };
};

Result<OpenedMachineState> open_machine_state(std::filesystem::path const& dir)
{
    OpenedMachineState out;
    STRATA_TRY(state, read_file((dir / "state").string(), "machine state", max_state_bytes));
    out.state = std::move(state);
    STRATA_TRY(chain, read_memory_chain(dir));
    out.chain = std::move(chain);
    std::vector<std::string> names;
    if (out.chain)
        for (auto const& l : *out.chain)
            names.push_back(l.file);
    else
        names.push_back("memory");
    for (auto const& name : names) {
        Fd fd(::open((dir / name).c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid())
            return errno_error("open memory file '" + (dir / name).string() + "'");
        off_t const size = ::lseek(fd.get(), 0, SEEK_END);
        if (size < 0)
            return errno_error("size memory file '" + (dir / name).string() + "'");
        if (!out.files.empty() && static_cast<std::uint64_t>(size) != out.size)
            return make_error(ErrorKind::BadInput, "the memory files of '" + dir.string() + "' differ in size");
        out.size = static_cast<std::uint64_t>(size);
        out.files.push_back(std::move(fd));
    }
    return out;
}

// A whole memory file as an archive layer: its data extents, not its holes.
LayerInput whole_memory_input(int fd, std::uint64_t size, std::string id)
{
    LayerInput in;
    in.id = std::move(id);
    in.size = size;
    in.status = [fd, size](std::uint64_t off, std::uint64_t max) -> Result<LayerRange> {
        off_t data = ::lseek(fd, static_cast<off_t>(off), SEEK_DATA);
        if (data < 0 && errno != ENXIO)
            return errno_error("read memory file");
        if (data < 0 || static_cast<std::uint64_t>(data) >= size)
            return LayerRange { LayerRangeKind::Unmapped, max };
        if (static_cast<std::uint64_t>(data) > off)
            return LayerRange { LayerRangeKind::Unmapped, std::min<std::uint64_t>(max, static_cast<std::uint64_t>(data) - off) };
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return errno_error("read memory file");
        return LayerRange { LayerRangeKind::Data, std::clamp<std::uint64_t>(static_cast<std::uint64_t>(hole) - off, 1, max) };
    };
    in.read = [fd](std::uint64_t off, std::span<std::byte> out) { return pread_all(fd, out, off); };
    return in;
}

// A differential memory file as an archive layer: the pages of its runs.
LayerInput diff_memory_input(int fd, std::uint64_t size, MemoryChainLayer const& layer)
{
    constexpr std::uint64_t page = 4096;
    LayerInput in;
    in.id = layer.id;
    in.size = size;
    auto const* runs = &layer.runs; // the chain outlives the export's inputs
    in.status = [runs](std::uint64_t off, std::uint64_t max) -> Result<LayerRange> {
        std::uint64_t const p = off / page;
        // The first run that ends past this page.
        auto it = std::upper_bound(runs->begin(), runs->end(), p, [](std::uint64_t v, PageRun const& r) { return v < r.first + r.count; });
        if (it == runs->end())
            return LayerRange { LayerRangeKind::Unmapped, max };
        if (it->first > p)
            return LayerRange { LayerRangeKind::Unmapped, std::min(max, it->first * page - off) };
        return LayerRange { LayerRangeKind::Data, std::min(max, (it->first + it->count) * page - off) };
    };
    in.read = [fd](std::uint64_t off, std::span<std::byte> out) { return pread_all(fd, out, off); };
    return in;
}

// Writes a new, sparse file of `size` bytes at `path` from one archive layer.
Status write_memory_layer(ArchiveReader& reader, archive::LayerRecord const& rec, std::filesystem::path const& path, std::uint64_t size)
{
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid())
        return errno_error("create '" + path.string() + "'");
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
        return errno_error("size '" + path.string() + "'");
    auto in_range = [size](std::uint64_t off, std::uint64_t len) { return off <= size && len <= size - off; };
    STRATA_TRY(reader.read_layer(
        rec,
        [&](std::uint64_t off, std::span<std::byte const> data) -> Status {
            if (!in_range(off, data.size()))
                return make_error(ErrorKind::BadInput, "archive: memory data beyond the guest's RAM");
            return pwrite_all(fd.get(), data, off);
        },
        [&](std::uint64_t off, std::uint64_t len) -> Status {
            // Zeros: what the new file's holes read as already.
            return in_range(off, len) ? ok() : Status(make_error(ErrorKind::BadInput, "archive: memory zeros beyond the guest's RAM"));
        }));
    if (::fsync(fd.get()) != 0)
        return errno_error("sync '" + path.string() + "'");
    return ok();
}

// Rebuilds a running-state image's folder from the archive into `dir` (new).
Status import_machine_state(ArchiveReader& reader, nlohmann::json const& meta, MachineImageRecord const& m, std::filesystem::path const& dir,
    std::string const& file)
{
    std::uint64_t const memory_bytes = m.spec.memory_mib << 20;
    auto const* state = reader.find("state");
    auto const* memory = reader.find("memory");
    if (state == nullptr || state->type != archive::EntryType::Blob || memory == nullptr || memory->type != archive::EntryType::Disk)
        return make_error(ErrorKind::BadInput, "archive '" + file + "' holds a running-state image without its state and memory");
    if (memory->size != memory_bytes)
        return make_error(ErrorKind::BadInput, "archive '" + file + "': the memory has " + std::to_string(memory->size) + " bytes; the guest's RAM is "
                + std::to_string(memory_bytes));
    if (state->size > max_state_bytes)
        return make_error(ErrorKind::BadInput, "archive '" + file + "': the state is too large");
    std::optional<std::vector<MemoryChainLayer>> chain;
    if (meta.contains("memory_chain")) {
        auto parsed = parse_memory_chain(meta["memory_chain"].dump());
        if (!parsed)
            return parsed.error().context("archive '" + file + "'");
        chain = std::move(parsed.value());
    }
    std::size_t const layers = chain ? chain->size() : 1;
    if (memory->layers.size() != layers)
        return make_error(ErrorKind::BadInput, "archive '" + file + "': the memory has " + std::to_string(memory->layers.size()) + " layers, its chain "
                + std::to_string(layers));
    std::error_code ec;
    if (!std::filesystem::create_directory(dir, ec) || ec)
        return make_error(ErrorKind::Io, "create '" + dir.string() + "': " + (ec ? ec.message() : "it exists"));
    std::vector<std::byte> bytes(static_cast<std::size_t>(state->size));
    STRATA_TRY(reader.read_blob(*state, [&](std::uint64_t off, std::span<std::byte const> data) -> Status {
        if (off > bytes.size() || data.size() > bytes.size() - off)
            return make_error(ErrorKind::BadInput, "archive: state data out of range");
        std::memcpy(bytes.data() + off, data.data(), data.size());
        return ok();
    }));
    STRATA_TRY(write_new_file((dir / "state").string(), bytes));
    for (std::size_t i = 0; i < layers; ++i)
        STRATA_TRY(write_memory_layer(reader, memory->layers[i], dir / (chain ? (*chain)[i].file : std::string("memory")), memory_bytes));
    if (chain)
        STRATA_TRY(write_memory_chain(dir, *chain));
    return ok();
}

} // namespace

Status export_machine_image(Store& store, std::string const& name, std::string const& file, int level, ProgressFn const& progress)
{
    STRATA_TRY(ensure_record_dirs(store.root()));
    MachineImageRecord m;
    std::vector<std::pair<std::string, std::vector<std::byte>>> blobs;
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    std::vector<std::vector<std::unique_ptr<Layer>>> opened;
    std::optional<OpenedMachineState> saved;
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
        if (m.running) {
            auto opened_state = open_machine_state(machine_state_dir(store.root(), name));
            if (!opened_state)
                return opened_state.error().context("export machine image '" + name + "'");
            saved = std::move(opened_state.value());
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
    nlohmann::json meta { { "kind", "machine-image" }, { "name", m.name }, { "record", machine_image_json(m) } };
    if (saved) {
        STRATA_TRY(writer->add_blob("state", saved->state));
        std::vector<LayerInput> inputs;
        for (std::size_t i = 0; i < saved->files.size(); ++i) {
            int const fd = saved->files[i].get();
            if (!saved->chain)
                inputs.push_back(whole_memory_input(fd, saved->size, "memory"));
            else if (!(*saved->chain)[i].diff)
                inputs.push_back(whole_memory_input(fd, saved->size, (*saved->chain)[i].id));
            else
                inputs.push_back(diff_memory_input(fd, saved->size, (*saved->chain)[i]));
        }
        STRATA_TRY(writer->add_disk("memory", inputs, progress));
        if (saved->chain)
            meta["memory_chain"] = nlohmann::json::parse(encode_memory_chain(*saved->chain));
    }
    return writer->finish(meta);
}

Result<MachineImageRecord> import_machine_image(Store& store, std::string const& name, std::string const& file, ProgressFn const& progress,
    CheckMachineState const& check_state)
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
    if (m.running && !check_state)
        return make_error(ErrorKind::Unsupported, "archive '" + file + "' holds a running-state image, which this import cannot check");

    // Everything is read and checked into tmp/ first (no lock: a long copy).
    TempLayerFiles temps;
    std::filesystem::path state_tmp;
    struct RemoveDir {
        std::filesystem::path* dir;
        ~RemoveDir()
        {
            std::error_code ec;
            if (!dir->empty())
                std::filesystem::remove_all(*dir, ec);
        }
    } remove_state_tmp { &state_tmp };
    if (m.running) {
        STRATA_TRY(id, new_memory_layer_id());
        state_tmp = std::filesystem::path(store.root()) / "tmp" / ("machine-state-" + id);
        STRATA_TRY(import_machine_state(*reader, meta, m, state_tmp, file));
        if (auto checked = check_state(state_tmp, m.spec.memory_mib << 20); !checked)
            return checked.error().context("archive '" + file + "'");
    }
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
    auto const state_dir = machine_state_dir(store.root(), name);
    if (m.running) {
        std::error_code ec;
        std::filesystem::create_directories(state_dir.parent_path(), ec);
        if (std::filesystem::exists(state_dir, ec)) {
            undo();
            (void)gc_artifacts(held);
            return make_error(ErrorKind::Exists, "a machine image named '" + name + "' already has saved memory");
        }
        // RENAME_NOREPLACE: a plain rename replaces an empty folder, which a
        // capture under the same name may have made a moment ago.
        if (::renameat2(AT_FDCWD, state_tmp.c_str(), AT_FDCWD, state_dir.c_str(), RENAME_NOREPLACE) != 0) {
            int const err = errno;
            undo();
            (void)gc_artifacts(held);
            if (err == EEXIST)
                return make_error(ErrorKind::Exists, "a machine image named '" + name + "' already has saved memory");
            errno = err;
            return errno_error("move the imported machine state into the store");
        }
        state_tmp.clear();
    }
    m.created = m.created.empty() ? utc_now() : m.created;
    if (auto recorded = record_machine_image(held, m); !recorded) {
        if (m.running) {
            std::error_code ec;
            std::filesystem::remove_all(state_dir, ec);
        }
        undo();
        (void)gc_artifacts(held);
        return recorded.error();
    }
    return load_machine_image(held, name);
}

} // namespace strata
