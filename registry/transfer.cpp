#include "registry/transfer.h"
#include "registry/transfer_detail.h"

#include "base/fd.h"
#include "base/sha256.h"
#include "imaging/archive/archive_reader.h"
#include "imaging/archive/archive_format.h"
#include "imaging/archive/archive_writer.h"
#include "imaging/layer/layer.h"
#include "registry/lazy.h"
#include "store/layer_transfer.h"

#include <nlohmann/json.hpp>

#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <dirent.h>
#include <mutex>
#include <thread>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace strata::registry {

using nlohmann::json;

namespace detail {

TempFile::~TempFile()
{
    if (!path.empty())
        ::unlink(path.c_str());
}

std::string records_dir(Store& store) { return store.root() + "/registry/layers"; }

Status ensure_dirs(Store& store)
{
    for (auto const& d : { store.root() + "/registry", records_dir(store), store.tmp_dir() + "/registry" })
        if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
            return errno_error("create '" + d + "'");
    return ok();
}

void tidy_registry_files(Store& store)
{
    prune_records(store.root());
    remove_stale_pulls(store.root(), kStalePullSeconds);
}

std::vector<std::string> dir_names(std::string const& dir)
{
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
        return names;
    while (auto* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
            names.emplace_back(e->d_name);
    ::closedir(d);
    return names;
}

std::optional<LayerBlob> load_record(Store& store, LayerId const& id)
{
    std::ifstream in(records_dir(store) + "/" + id.to_string() + ".json");
    if (!in)
        return std::nullopt;
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (!j.is_object())
        return std::nullopt;
    LayerBlob b;
    b.content = j.value("content", std::string());
    b.layer_size = j.value("layer_size", std::uint64_t { 0 });
    b.content_verified = j.contains("content_verified") && j["content_verified"].is_boolean() && j["content_verified"].get<bool>();
    if (j.contains("repositories") && j["repositories"].is_array())
        for (auto const& r : j["repositories"])
            if (r.is_string())
                b.repositories.push_back(r.get<std::string>());
    auto part_of = [&](json const& p, std::uint64_t offset, std::uint64_t length) {
        BlobPart part;
        part.blob = p.value("blob", std::string());
        part.size = p.value("size", std::uint64_t { 0 });
        part.offset = p.value("offset", offset);
        part.length = p.value("length", length);
        part.index_digest = p.value("index_digest", std::string());
        part.index_offset = p.value("index_offset", std::uint64_t { 0 });
        part.index_length = p.value("index_length", std::uint64_t { 0 });
        return part;
    };
    try {
        if (j.contains("parts") && j["parts"].is_array())
            for (auto const& p : j["parts"])
                b.parts.push_back(part_of(p, 0, 0));
        else
            b.parts.push_back(part_of(j, 0, b.layer_size)); // a record of one blob, as first written
    } catch (json::exception const&) {
        return std::nullopt;
    }
    if (b.content.size() != 71 || b.parts.empty())
        return std::nullopt;
    for (auto const& p : b.parts)
        if (p.blob.size() != 71)
            return std::nullopt;
    return b;
}

// Each layer record of the store with its layer's id, in no particular order,
// until fn returns true; records that do not parse are passed over.
template <typename Fn>
void for_each_record(Store& store, Fn&& fn)
{
    for (auto const& n : dir_names(records_dir(store))) {
        if (n.size() < 6 || n.substr(n.size() - 5) != ".json")
            continue;
        auto id = LayerId::parse(n.substr(0, n.size() - 5));
        if (!id)
            continue;
        auto r = load_record(store, id.value());
        if (r && fn(id.value(), *r))
            return;
    }
}


Status save_record(Store& store, LayerId const& id, LayerBlob const& b)
{
    json parts = json::array();
    for (auto const& p : b.parts)
        parts.push_back({ { "blob", p.blob }, { "size", p.size }, { "offset", p.offset }, { "length", p.length },
            { "index_digest", p.index_digest }, { "index_offset", p.index_offset }, { "index_length", p.index_length } });
    json j { { "content", b.content }, { "content_verified", b.content_verified }, { "layer_size", b.layer_size },
        { "repositories", b.repositories }, { "parts", parts } };
    std::string text = j.dump(2) + "\n";
    STRATA_TRY(f, AtomicFile::create(records_dir(store) + "/" + id.to_string() + ".json"));
    STRATA_TRY(pwrite_all(f.fd(), std::as_bytes(std::span(text.data(), text.size())), 0));
    return f.commit();
}

void add_repository(LayerBlob& b, std::string const& repo)
{
    if (std::find(b.repositories.begin(), b.repositories.end(), repo) == b.repositories.end())
        b.repositories.push_back(repo);
}

Result<std::pair<std::string, std::uint64_t>> file_digest(std::string const& path)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error("open '" + path + "'");
    Sha256Hasher hash;
    std::vector<std::byte> buf(1 << 20);
    std::uint64_t total = 0;
    for (;;) {
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno_error("read '" + path + "'");
        if (n == 0)
            break;
        hash.update(buf.data(), static_cast<std::size_t>(n));
        total += static_cast<std::uint64_t>(n);
    }
    return std::pair { "sha256:" + sha256_hex(hash.finish()), total };
}

// The parts a layer of size bytes is pushed as: one, or ranges of part_size.
std::vector<std::pair<std::uint64_t, std::uint64_t>> part_plan(std::uint64_t size, std::uint64_t part_size)
{
    std::vector<std::pair<std::uint64_t, std::uint64_t>> plan;
    if (part_size == 0 || size <= part_size)
        return { { 0, size } };
    for (std::uint64_t off = 0; off < size; off += part_size)
        plan.emplace_back(off, std::min(part_size, size - off));
    return plan;
}

// Builds at path the blob of [offset, offset + length) of a frozen layer: a
// portable archive holding one disk entry "layer" of one layer record. A whole
// layer's record is named by its content digest; a part's is named "part" and
// its metadata says only its length, so equal parts of any layers are equal
// blobs (and a registry that has one is not sent it again).
Result<BlobPart> build_part_blob(Layer const& layer, Sha256 const& content, std::uint64_t offset, std::uint64_t length, bool whole,
    std::string const& path, TransferOptions const& options)
{
    LayerInput full = archive_layer_input(layer);
    LayerInput in;
    if (whole) {
        in = full;
        in.id = content.to_string();
    } else {
        in.id = "part";
        in.size = length;
        in.read = [full, offset](std::uint64_t off, std::span<std::byte> out) { return full.read(off + offset, out); };
        in.status = [full, offset, length](std::uint64_t off, std::uint64_t max) {
            return full.status(off + offset, std::min(max, length - off));
        };
    }
    ::unlink(path.c_str());
    STRATA_TRY(writer, ArchiveWriter::create(path, ArchiveOptions { options.level, options.chunk_size, 0 }));
    STRATA_TRY(writer->add_disk("layer", { in }, options.progress));
    if (whole)
        STRATA_TRY(writer->finish({ { "kind", "layer" }, { "content_digest", content.to_string() }, { "size", layer.size() } }));
    else
        STRATA_TRY(writer->finish({ { "kind", "layer-part" }, { "size", length } }));
    STRATA_TRY(d, file_digest(path));
    BlobPart b;
    b.blob = d.first;
    b.size = d.second;
    b.offset = offset;
    b.length = length;
    // Where the chunk index is, from the trailer, and its digest.
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error("open '" + path + "'");
    std::array<std::byte, archive::kTrailerSize> tb {};
    STRATA_TRY(pread_all(fd.get(), tb, b.size - archive::kTrailerSize));
    STRATA_TRY(trailer, archive::parse_trailer(tb, b.size));
    std::string index(static_cast<std::size_t>(trailer.manifest_length), '\0');
    STRATA_TRY(pread_all(fd.get(), std::as_writable_bytes(std::span(index.data(), index.size())), trailer.manifest_offset));
    b.index_digest = digest_of(index);
    b.index_offset = trailer.manifest_offset;
    b.index_length = trailer.manifest_length;
    return b;
}

std::string repo_key(Reference const& ref) { return ref.registry + "/" + ref.repository; }

// The repositories the store's records say hold a blob (as any layer's part).
std::vector<std::string> blob_repositories(Store& store, std::string const& blob)
{
    std::vector<std::string> out;
    for_each_record(store, [&](LayerId const&, LayerBlob const& r) {
        for (auto const& p : r.parts)
            if (p.blob == blob)
                for (auto const& repo : r.repositories)
                    if (std::find(out.begin(), out.end(), repo) == out.end())
                        out.push_back(repo);
        return false;
    });
    return out;
}

// Makes sure the registry holds the layer's blobs: for each part, HEAD, then a
// mount from a repository of the same registry known to hold it, else an
// upload (built if need be).
Status push_layer(Store& store, RegistryClient& client, LayerId const& id, TransferOptions const& options, LayerBlob& out,
    TransferStats& stats)
{
    auto const& ref = client.reference();
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    STRATA_TRY(layer, Layer::open(store.layer_path(id), LayerOpen::ReadOnly, *engine, LayerOptions { .cache = CacheMode::Writeback }));
    if (!layer->frozen())
        return make_error(ErrorKind::Internal, "layer " + id.to_string() + " of an image is not frozen");
    auto plan = part_plan(layer->size(), options.part_size);
    auto record = load_record(store, id);
    if (record) {
        // A record written before blobs carried their index's place, or for
        // another part size, is built again.
        bool same = record->parts.size() == plan.size();
        for (std::size_t i = 0; same && i < plan.size(); ++i)
            same = !record->parts[i].index_digest.empty() && record->parts[i].offset == plan[i].first && record->parts[i].length == plan[i].second;
        if (!same)
            record.reset();
    }
    LayerBlob rec;
    std::vector<bool> have(plan.size(), false);
    if (record) {
        rec = *record;
        for (std::size_t i = 0; i < plan.size(); ++i) {
            STRATA_TRY(size, client.blob_size(rec.parts[i].blob));
            have[i] = size.has_value();
            for (auto const& r : rec.repositories) {
                if (have[i])
                    break;
                if (r.rfind(ref.registry + "/", 0) != 0 || r == repo_key(ref))
                    continue;
                STRATA_TRY(mounted, client.mount_blob(rec.parts[i].blob, r.substr(ref.registry.size() + 1)));
                if (mounted) {
                    ++stats.blobs_mounted;
                    have[i] = true;
                }
            }
        }
    }
    bool missing = std::find(have.begin(), have.end(), false) != have.end();
    if (missing && layer_is_lazy(store.root(), id))
        return make_error(ErrorKind::Busy, "layer " + id.to_string() + " is still being pulled lazily and the registry "
                + ref.registry + "/" + ref.repository + " does not have its blob: wait for its fill (`strata images fill`)");
    if (missing && !record) {
        Sha256 content;
        if (auto d = layer->digest()) {
            content = *d;
        } else {
            STRATA_TRY(computed, layer->compute_digest());
            content = computed;
        }
        rec.content = content.to_string();
        rec.content_verified = true;
        rec.layer_size = layer->size();
        rec.parts.assign(plan.size(), BlobPart {});
    }
    for (std::size_t i = 0; i < plan.size(); ++i) {
        if (have[i]) {
            ++stats.blobs_skipped;
            continue;
        }
        auto content = archive::parse_hex_digest(rec.content.substr(7));
        if (!content)
            return content.error();
        TempFile blob(store.tmp_dir() + "/registry/push-" + id.to_string() + "-" + std::to_string(i) + ".blob");
        STRATA_TRY(built, build_part_blob(*layer, content.value(), plan[i].first, plan[i].second, plan.size() == 1, blob.path, options));
        STRATA_TRY(size, client.blob_size(built.blob));
        bool there = size.has_value();
        // The same bytes may be a part of another layer this store pushed to
        // another repository of this registry: mount it from there.
        for (auto const& r : there ? std::vector<std::string>() : blob_repositories(store, built.blob)) {
            if (r.rfind(ref.registry + "/", 0) != 0 || r == repo_key(ref))
                continue;
            STRATA_TRY(mounted, client.mount_blob(built.blob, r.substr(ref.registry.size() + 1)));
            if (mounted) {
                ++stats.blobs_mounted;
                there = true;
                break;
            }
        }
        if (there)
            ++stats.blobs_skipped;
        else
            STRATA_TRY(client.upload_blob_file(blob.path, built.blob, stats));
        rec.parts[i] = built;
    }
    add_repository(rec, repo_key(ref));
    STRATA_TRY(save_record(store, id, rec));
    out = rec;
    return ok();
}

Status push_bytes(RegistryClient& client, std::string const& bytes, TransferStats& stats)
{
    std::string digest = digest_of(bytes);
    STRATA_TRY(size, client.blob_size(digest));
    if (size) {
        ++stats.blobs_skipped;
        return ok();
    }
    return client.upload_blob_bytes(bytes, digest, stats);
}

Error bad(std::string const& what) { return make_error(ErrorKind::BadInput, what); }

LazyFiles::~LazyFiles()
{
    for (auto const& id : ids)
        remove_lazy(root, id);
}

std::vector<json> layer_descriptors(LayerBlob const& b, std::string const& disk_id)
{
    std::vector<json> out;
    for (auto const& p : b.parts) {
        json a { { kContentDigestAnnotation, b.content }, { kLayerSizeAnnotation, std::to_string(b.layer_size) },
            { kIndexDigestAnnotation, p.index_digest }, { kIndexOffsetAnnotation, std::to_string(p.index_offset) },
            { kIndexLengthAnnotation, std::to_string(p.index_length) } };
        if (b.parts.size() > 1) {
            a[kPartOffsetAnnotation] = std::to_string(p.offset);
            a[kPartLengthAnnotation] = std::to_string(p.length);
        }
        if (!disk_id.empty())
            a[kDiskAnnotation] = disk_id;
        out.push_back({ { "mediaType", kLayerBlobType }, { "digest", p.blob }, { "size", p.size }, { "annotations", a } });
    }
    return out;
}

Result<std::vector<WantedLayer>> group_parts(std::vector<WantedLayer> descriptors, std::string const& where)
{
    std::vector<WantedLayer> out;
    for (auto& d : descriptors) {
        auto const& p = d.parts[0];
        if (p.offset == 0) {
            out.push_back(std::move(d));
            continue;
        }
        if (out.empty())
            return bad(where + ": a layer part does not follow its layer's first part");
        auto& w = out.back();
        auto const& last = w.parts.back();
        if (w.content != d.content || w.layer_size != d.layer_size || w.disk != d.disk || p.offset != last.offset + last.length)
            return bad(where + ": a layer's parts are not consecutive parts of one layer");
        w.parts.push_back(p);
    }
    for (auto const& w : out) {
        auto const& last = w.parts.back();
        if (last.offset + last.length != w.layer_size)
            return bad(where + ": a layer's parts do not cover it");
    }
    return out;
}

// A layer the store holds whose content digest is w's (a record's, when the
// store computed it, or a frozen layer's header), or that a record says was
// pulled from or pushed as w's very blobs, if any. The blobs name a layer
// whatever digest a manifest claims for it: a layer built from a blob holds
// that blob's chunks, each checked against the blob's own index (a manifest
// pushed by an older strata may carry a digest of its file's layout,
// FORMAT.md; one may also lie).
Result<std::optional<LayerId>> find_layer(Store& store, WantedLayer const& w)
{
    auto same_blobs = [&](LayerBlob const& r) {
        if (r.layer_size != w.layer_size || r.parts.size() != w.parts.size())
            return false;
        for (std::size_t i = 0; i < r.parts.size(); ++i)
            if (r.parts[i].blob != w.parts[i].blob || r.parts[i].offset != w.parts[i].offset || r.parts[i].length != w.parts[i].length)
                return false;
        return true;
    };
    std::string const& content = w.content;
    std::optional<LayerId> found;
    for_each_record(store, [&](LayerId const& id, LayerBlob const& r) {
        struct stat st {};
        if (((r.content_verified && r.content == content) || same_blobs(r)) && ::stat(store.layer_path(id).c_str(), &st) == 0)
            found = id;
        return found.has_value();
    });
    if (found)
        return found;
    STRATA_TRY(all, store.layer_digests());
    for (auto const& [id, digest] : all)
        if (digest.to_string() == content)
            return std::optional<LayerId>(id);
    return std::optional<LayerId>();
}

// Decompresses and checks the chunks of a blob file on worker threads (zstd and
// SHA-256 are most of a pull's CPU time) and hands them to sink in order, on
// this thread. At most kWindow chunks are decoded ahead of the sink.
Status unpack_chunks(std::string const& blob_path, std::vector<archive::Chunk> const& chunks,
    std::function<Status(std::uint64_t, std::span<std::byte const>)> const& sink)
{
    constexpr std::size_t kWindow = 8;
    Fd fd(::open(blob_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error("open '" + blob_path + "'");
    struct Slot {
        std::vector<std::byte> packed, raw;
        std::optional<Error> error;
        bool ready { false };
    };
    std::vector<Slot> slots(kWindow);
    std::mutex mu;
    std::condition_variable cv;
    std::size_t claimed = 0, consumed = 0;
    bool stop = false;
    auto work = [&] {
        std::unique_lock lock(mu);
        for (;;) {
            cv.wait(lock, [&] { return stop || claimed >= chunks.size() || claimed < consumed + kWindow; });
            if (stop || claimed >= chunks.size())
                return;
            std::size_t i = claimed++;
            lock.unlock();
            auto const& c = chunks[i];
            Slot& slot = slots[i % kWindow];
            slot.error.reset();
            slot.packed.resize(static_cast<std::size_t>(c.stored));
            slot.raw.resize(static_cast<std::size_t>(c.length));
            auto where = " (chunk at layer offset " + std::to_string(c.offset) + ")";
            if (auto r = pread_all(fd.get(), slot.packed, c.at); !r) {
                slot.error = r.error();
            } else {
                std::size_t n = ZSTD_decompress(slot.raw.data(), slot.raw.size(), slot.packed.data(), slot.packed.size());
                if (ZSTD_isError(n) || n != slot.raw.size())
                    slot.error = bad("layer blob: a chunk does not decompress to its length" + where);
                else if (archive::sha256(slot.raw) != c.digest)
                    slot.error = bad("layer blob: a chunk's SHA-256 does not match" + where);
            }
            lock.lock();
            slot.ready = true;
            cv.notify_all();
        }
    };
    unsigned n_workers = std::clamp(std::thread::hardware_concurrency(), 1U, 4U);
    std::vector<std::thread> workers;
    for (unsigned k = 0; k < n_workers; ++k)
        workers.emplace_back(work);
    Status status = ok();
    for (std::size_t i = 0; i < chunks.size() && status; ++i) {
        Slot& slot = slots[i % kWindow];
        {
            std::unique_lock lock(mu);
            cv.wait(lock, [&] { return slot.ready; });
        }
        if (slot.error)
            status = *slot.error;
        else
            status = sink(chunks[i].offset, slot.raw);
        std::lock_guard lock(mu);
        slot.ready = false;
        ++consumed;
        cv.notify_all();
    }
    {
        std::lock_guard lock(mu);
        stop = true;
    }
    cv.notify_all();
    for (auto& t : workers)
        t.join();
    return status;
}

// Builds a frozen layer at tmp/<new id> from verified blob files (its parts);
// returns it and its content digest.
Result<std::pair<LayerId, Sha256>> materialize(Store& store, std::vector<std::string> const& files, WantedLayer const& w, bool bottom, TempLayerFiles& temps)
{
    // No whole-file verify(): download_blob checked each blob's SHA-256 against
    // the manifest's digest, which covers every byte the trailer's digest does;
    // each chunk's SHA-256 is still checked as it is read.
    std::vector<archive::LayerRecord> recs;
    for (std::size_t k = 0; k < files.size(); ++k) {
        STRATA_TRY(reader, ArchiveReader::open(files[k]));
        auto const& entries = reader->manifest().entries;
        if (entries.size() != 1 || entries[0].type != archive::EntryType::Disk || entries[0].layers.size() != 1)
            return bad("a layer blob holds exactly one disk entry of one layer; this one does not");
        auto const& rec = entries[0].layers[0];
        if (rec.size != w.parts[k].length)
            return bad("a layer blob holds " + std::to_string(rec.size) + " bytes of its layer where the manifest says "
                + std::to_string(w.parts[k].length));
        recs.push_back(rec);
    }
    // Through the page cache: the new layer is written once, in order, and
    // freeze(true) syncs it and then reads it back for its digest, which finds
    // it still in the cache. (O_DIRECT would bounce every unaligned chunk buffer
    // and read the layer back from the disk.)
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    LayerId id = LayerId::random();
    std::string path = store.tmp_dir() + "/" + id.to_string();
    temps.paths.push_back(path);
    STRATA_TRY(layer, Layer::create(path, w.layer_size, id, *engine, LayerOptions { .cache = CacheMode::Writeback }));
    BlockAssembler out(*layer, !bottom);
    for (std::size_t k = 0; k < files.size(); ++k) {
        std::uint64_t base = w.parts[k].offset;
        for (auto const& z : recs[k].zeros) {
            std::uint64_t first = (base + z.offset + kBlockSize - 1) / kBlockSize, end = (base + z.offset + z.length) / kBlockSize;
            if (end > first)
                layer->set_zero(first, end - first);
        }
        STRATA_TRY(unpack_chunks(files[k], recs[k].chunks,
            [&](std::uint64_t off, std::span<std::byte const> d) { return out.put(base + off, d); }));
    }
    STRATA_TRY(out.flush());
    STRATA_TRY(layer->freeze(true));
    return std::pair { id, *layer->digest() };
}

std::string hex_of(std::string const& digest) { return digest.substr(7); }

Result<WantedLayer> parse_layer_descriptor(json const& l, std::uint64_t max_size, std::string const& where)
{
    if (!l.is_object() || l.value("mediaType", std::string()) != kLayerBlobType || !l.contains("annotations") || !l["annotations"].is_object())
        return bad(where + ": a layer is not a strata layer blob");
    WantedLayer w;
    BlobPart p;
    p.blob = l.value("digest", std::string());
    p.size = l.contains("size") && l["size"].is_number_unsigned() ? l["size"].get<std::uint64_t>() : 0;
    auto const& a = l["annotations"];
    w.content = a.contains(kContentDigestAnnotation) && a[kContentDigestAnnotation].is_string() ? a[kContentDigestAnnotation].get<std::string>() : "";
    w.disk = a.contains(kDiskAnnotation) && a[kDiskAnnotation].is_string() ? a[kDiskAnnotation].get<std::string>() : "";
    std::string ls = a.contains(kLayerSizeAnnotation) && a[kLayerSizeAnnotation].is_string() ? a[kLayerSizeAnnotation].get<std::string>() : "";
    if (p.blob.size() != 71 || p.blob.rfind("sha256:", 0) != 0 || p.blob.find_first_not_of("0123456789abcdef", 7) != std::string::npos
        || w.content.size() != 71 || w.content.rfind("sha256:", 0) != 0 || ls.empty() || ls.size() > 19
        || ls.find_first_not_of("0123456789") != std::string::npos || p.size == 0)
        return bad(where + ": a layer's digest, size or annotations are malformed");
    w.layer_size = std::stoull(ls);
    if (w.layer_size > max_size || w.layer_size % 512 != 0)
        return bad(where + ": a layer is larger than its disk or not a multiple of 512 bytes");
    auto number = [&](char const* key) -> std::optional<std::uint64_t> {
        if (!a.contains(key) || !a[key].is_string())
            return std::nullopt;
        auto t = a[key].get<std::string>();
        if (t.empty() || t.size() > 19 || t.find_first_not_of("0123456789") != std::string::npos)
            return std::nullopt;
        return std::stoull(t);
    };
    if (a.contains(kIndexDigestAnnotation)) {
        auto d = a[kIndexDigestAnnotation].is_string() ? a[kIndexDigestAnnotation].get<std::string>() : "";
        auto off = number(kIndexOffsetAnnotation), len = number(kIndexLengthAnnotation);
        if (d.size() != 71 || d.rfind("sha256:", 0) != 0 || !off || !len || *off < archive::kHeaderSize
            || *off + *len + archive::kTrailerSize != p.size || *len > archive::kMaxManifestBytes)
            return bad(where + ": a layer's chunk index annotations are malformed");
        p.index_digest = d;
        p.index_offset = *off;
        p.index_length = *len;
    }
    p.offset = 0;
    p.length = w.layer_size;
    if (a.contains(kPartOffsetAnnotation) || a.contains(kPartLengthAnnotation)) {
        auto off = number(kPartOffsetAnnotation), len = number(kPartLengthAnnotation);
        if (!off || !len || *len == 0 || *off % kBlockSize != 0 || *off > w.layer_size || *len > w.layer_size - *off)
            return bad(where + ": a layer part's offset or length is malformed");
        p.offset = *off;
        p.length = *len;
    }
    w.parts.push_back(p);
    return w;
}

Result<StrataManifest> get_strata_manifest(RegistryClient& client, std::string const& artifact_type, std::string const& config_type)
{
    auto const& ref = client.reference();
    STRATA_TRY(manifest, client.get_manifest(ref.target()));
    StrataManifest out;
    out.digest = manifest.digest;
    json j = json::parse(manifest.bytes, nullptr, false);
    if (!j.is_object() || !j.contains("schemaVersion") || j["schemaVersion"] != 2)
        return bad(ref.to_string() + ": the registry's manifest is not an OCI image manifest");
    std::string media = j.contains("mediaType") && j["mediaType"].is_string() ? j["mediaType"].get<std::string>() : "";
    if (media != kOciManifestType)
        return bad(ref.to_string() + ": a manifest of type '" + media + "' is not a strata artifact (strata pushes " + kOciManifestType + ")");
    std::string artifact = j.contains("artifactType") && j["artifactType"].is_string() ? j["artifactType"].get<std::string>() : "";
    if (artifact != artifact_type) {
        std::string hint;
        if (artifact == kImageArtifactType)
            hint = " (it is a strata image: use `strata images pull`)";
        else if (artifact == kMachineImageArtifactType)
            hint = " (it is a strata machine image: use `strata machine-images pull`)";
        else
            hint = " (a container image or another tool's artifact)";
        return bad(ref.to_string() + " is not a strata " + (artifact_type == kImageArtifactType ? "image" : "machine image")
            + ": its artifactType is '" + artifact + "'" + hint);
    }
    if (!j.contains("config") || !j["config"].is_object() || !j.contains("layers") || !j["layers"].is_array())
        return bad(ref.to_string() + ": the manifest has no config or no layers");
    auto const& jc = j["config"];
    std::string config_digest = jc.contains("digest") && jc["digest"].is_string() ? jc["digest"].get<std::string>() : "";
    if (!jc.contains("mediaType") || jc["mediaType"] != config_type || config_digest.size() != 71 || config_digest.rfind("sha256:", 0) != 0)
        return bad(ref.to_string() + ": the manifest's config is not a strata config of type " + config_type);
    STRATA_TRY(config_bytes, client.fetch_blob(config_digest, 4 << 20));
    out.config = json::parse(config_bytes, nullptr, false);
    if (!out.config.is_object())
        return bad(ref.to_string() + ": the config is not a JSON object");
    out.manifest = std::move(j);
    return out;
}

Result<std::vector<PartIndex>> fetch_indexes(RegistryClient& client, WantedLayer const& w, TransferStats& stats)
{
    auto const& ref = client.reference();
    std::vector<PartIndex> parts;
    for (auto const& p : w.parts) {
        if (p.index_digest.empty())
            return make_error(ErrorKind::Unsupported, ref.to_string() + ": layer blob " + p.blob
                    + " carries no chunk index annotation (pushed by an older strata)");
        STRATA_TRY(text, client.fetch_range(p.blob, p.index_offset, p.index_length));
        stats.bytes_downloaded += text.size();
        if (digest_of(text) != p.index_digest)
            return bad(ref.to_string() + ": the chunk index of blob " + p.blob + " does not match its digest in the manifest: refused");
        STRATA_TRY(index, archive::parse_manifest(text, p.index_offset));
        if (index.entries.size() != 1 || index.entries[0].type != archive::EntryType::Disk || index.entries[0].layers.size() != 1)
            return bad("a layer blob holds exactly one disk entry of one layer; " + p.blob + " does not");
        auto const& rec = index.entries[0].layers[0];
        if (rec.size != p.length)
            return bad("layer blob " + p.blob + " holds " + std::to_string(rec.size) + " bytes of its layer where the manifest says "
                + std::to_string(p.length));
        // Chunks in layer order, each in the blob before the index and after
        // the previous one (what the writer makes; parse_manifest checks
        // each chunk's own bounds).
        std::uint64_t layer_end = 0, blob_end = archive::kHeaderSize;
        for (auto const& c : rec.chunks) {
            if (c.offset % kBlockSize != 0 || (c.length % kBlockSize != 0 && c.offset + c.length != rec.size))
                return make_error(ErrorKind::Unsupported, "layer blob " + p.blob + " has chunks that are not whole 4 KiB blocks");
            if (c.offset < layer_end || c.at < blob_end || c.stored > p.index_offset || c.at > p.index_offset - c.stored)
                return make_error(ErrorKind::Unsupported, "layer blob " + p.blob + " has chunks out of order");
            layer_end = c.offset + c.length;
            blob_end = c.at + c.stored;
        }
        parts.push_back(PartIndex { &p, rec });
    }
    return parts;
}

Result<std::vector<LazyChunk>> lay_out(Layer& layer, std::vector<PartIndex> const& parts)
{
    std::vector<LazyChunk> chunks;
    for (std::uint32_t k = 0; k < parts.size(); ++k) {
        auto const& [p, rec] = parts[k];
        for (auto const& c : rec.chunks) {
            std::uint64_t first = (p->offset + c.offset) / kBlockSize, count = (c.length + kBlockSize - 1) / kBlockSize;
            STRATA_TRY(at, layer.allocate(count));
            layer.record(first, count, mapval::data(at));
            chunks.push_back(LazyChunk { p->offset + c.offset, c.length, c.at, c.stored, at, c.digest, k });
        }
        for (auto const& z : rec.zeros) {
            std::uint64_t first = (p->offset + z.offset + kBlockSize - 1) / kBlockSize, end = (p->offset + z.offset + z.length) / kBlockSize;
            if (end > first)
                layer.set_zero(first, end - first);
        }
    }
    // The file is as long as the data it will hold (holes until written).
    if (!chunks.empty()) {
        auto const& last = chunks.back();
        std::uint64_t end = last.file_offset + (last.length + kBlockSize - 1) / kBlockSize * kBlockSize;
        struct stat st {};
        if (::fstat(layer.fd(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) < end && ::ftruncate(layer.fd(), static_cast<off_t>(end)) != 0)
            return errno_error("extend '" + layer.path() + "'");
    }
    return chunks;
}

// An incomplete layer at tmp/<new id> for blob w: its mapping from the blob's
// chunk index (fetched alone and checked against the manifest's annotation), its
// data left for LazyDisk and the fill to fetch; its description is saved now.
Result<LayerId> make_lazy_layer(Store& store, RegistryClient& client, WantedLayer const& w, TransferOptions const& options, Fetched& f,
    TransferStats& stats)
{
    auto const& ref = client.reference();
    auto indexes = fetch_indexes(client, w, stats);
    if (!indexes && indexes.error().kind == ErrorKind::Unsupported)
        return make_error(ErrorKind::Unsupported, indexes.error().message + ": pull it without --lazy");
    if (!indexes)
        return indexes.error();
    auto const& parts = indexes.value();
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    LayerId id = LayerId::random();
    std::string path = store.tmp_dir() + "/" + id.to_string();
    f.temps.paths.push_back(path);
    STRATA_TRY(layer, Layer::create(path, w.layer_size, id, *engine));
    LazyLayerInfo info;
    info.id = id;
    info.registry = ref.registry;
    info.repository = ref.repository;
    info.plain_http = options.client.plain_http;
    info.ca_cert = options.client.ca_cert;
    info.tls_verify = options.client.tls_verify;
    info.layer_size = w.layer_size;
    info.content = w.content;
    for (auto const& [p, rec] : parts)
        info.blobs.push_back(LazyBlob { p->blob, p->size });
    STRATA_TRY(chunks, lay_out(*layer, parts));
    info.chunks = std::move(chunks);
    STRATA_TRY(layer->freeze(false));
    layer.reset();
    f.lazy.root = store.root();
    f.lazy.ids.push_back(id);
    STRATA_TRY(save_lazy(store.root(), info));
    return id;
}

// The content digest of a layer a pull built, against the one its manifest
// claims. Every byte of the layer was verified against the blobs' and chunks'
// digests already; the claimed content digest can differ when an older strata
// pushed it (it hashed the pushing layer file's layout, FORMAT.md), which no
// pull can reproduce. The store's record then names the layer by what it holds
// (and by its blobs), never by the claim, so a later pull of another image
// cannot be given this layer on the word of this manifest.
void note_content(RegistryClient& client, WantedLayer const& w, Sha256 const& content, LayerBlob& record)
{
    record.content_verified = true;
    if (content.to_string() == w.content)
        return;
    std::fprintf(stderr, "strata: %s: layer blob %s: its content digest annotation %s is not the content's %s "
                         "(pushed by a strata whose digest depended on the layer file's layout?): recorded by its content\n",
        client.reference().to_string().c_str(), w.parts[0].blob.c_str(), w.content.c_str(), content.to_string().c_str());
    record.content = content.to_string();
}

Status fetch_layer(Store& store, RegistryClient& client, WantedLayer const& w, bool bottom, Fetched& f, TransferStats& stats,
    TransferOptions const& options)
{
    STRATA_TRY(found, find_layer(store, w));
    if (found) {
        // A pull that is not lazy leaves nothing incomplete: a layer an
        // earlier lazy pull left so is filled now.
        if (!options.lazy && layer_is_lazy(store.root(), *found)) {
            STRATA_TRY(fetched, fill_layer(store.root(), *found));
            stats.bytes_downloaded += fetched;
        }
        f.ids.push_back(*found);
        ++stats.layers_reused;
        return ok();
    }
    LayerBlob record { w.parts, w.content, w.layer_size, { repo_key(client.reference()) } };
    if (options.lazy) {
        STRATA_TRY(id, make_lazy_layer(store, client, w, options, f, stats));
        f.ids.push_back(id);
        f.fresh.push_back(id);
        f.records.emplace_back(id, record);
        return ok();
    }
    // Streamed into the layer when the blobs carry their chunk indexes.
    auto streamed = stream_layer(store, client, w, f, stats);
    if (streamed) {
        auto [new_id, content] = streamed.value();
        note_content(client, w, content, record);
        f.ids.push_back(new_id);
        // The same blobs twice in one image are one layer (stream_layer
        // found the first one's file complete).
        if (std::find(f.fresh.begin(), f.fresh.end(), new_id) == f.fresh.end()) {
            f.fresh.push_back(new_id);
            f.records.emplace_back(new_id, record);
        }
        return ok();
    }
    if (streamed.error().kind != ErrorKind::Unsupported)
        return streamed.error().context(client.reference().to_string() + ": layer blob " + w.parts[0].blob);
    // Otherwise each blob is downloaded whole, then read. Kept across failed
    // pulls: a repeated pull resumes them (download_blob verifies each whole
    // file once complete).
    std::vector<std::string> files;
    for (auto const& p : w.parts) {
        std::string path = store.tmp_dir() + "/registry/" + hex_of(p.blob) + ".blob";
        STRATA_TRY(client.download_blob(p.blob, p.size, path, stats));
        f.blob_files.push_back(path);
        files.push_back(path);
    }
    auto id = materialize(store, files, w, bottom, f.temps);
    if (!id) {
        // A blob whose digest matched but whose content is not a valid layer
        // blob will not become valid by downloading it again.
        for (auto const& p : files)
            ::unlink(p.c_str());
        return id.error().context(client.reference().to_string() + ": layer blob " + w.parts[0].blob);
    }
    auto [new_id, content] = id.value();
    note_content(client, w, content, record);
    f.ids.push_back(new_id);
    f.fresh.push_back(new_id);
    f.records.emplace_back(new_id, record);
    return ok();
}

Status save_records(Store& store, Fetched const& f)
{
    for (auto const& [id, rec] : f.records)
        STRATA_TRY(save_record(store, id, rec));
    return ok();
}

void recorded(Fetched& f)
{
    f.temps.paths.clear();
    f.lazy.ids.clear();
    for (auto const& p : f.blob_files)
        ::unlink(p.c_str());
}

} // namespace detail

void prune_records(std::string const& root)
{
    // A record or lazy description may be written before its layer is adopted
    // (the layer is then at tmp/<id>, and rename moves it to layers/<id>), so
    // tmp/ is looked at first: a layer in neither place is gone for good.
    auto gone = [&](std::string const& id) {
        struct stat st {};
        return ::stat((root + "/tmp/" + id).c_str(), &st) != 0 && ::stat((root + "/layers/" + id).c_str(), &st) != 0;
    };
    for (auto const& dir : { root + "/registry/layers", lazy_dir(root) }) {
        for (auto const& n : detail::dir_names(dir)) {
            auto dot = n.find('.');
            if (dot == std::string::npos || dot == 0)
                continue;
            auto id = LayerId::parse(n.substr(0, dot));
            if (!id)
                continue;
            if (gone(id.value().to_string()))
                ::unlink((dir + "/" + n).c_str());
        }
    }
}

using namespace detail;

Result<PushResult> push_image(Store& store, std::string const& name, Reference const& ref, TransferOptions const& options)
{
    STRATA_TRY(m, store.get(ObjectKind::Image, name));
    STRATA_TRY(ensure_dirs(store));
    STRATA_TRY(client, RegistryClient::create(ref, options.client));
    PushResult result;
    json layers = json::array(), config_layers = json::array();
    for (auto const& id : m.layers) {
        LayerBlob b;
        STRATA_TRY(push_layer(store, *client, id, options, b, result.stats));
        for (auto& d : layer_descriptors(b, ""))
            layers.push_back(std::move(d));
        config_layers.push_back({ { "content_digest", b.content }, { "size", b.layer_size } });
    }
    json config { { "kind", "image" }, { "name", m.name }, { "size", m.size }, { "description", m.description },
        { "labels", m.labels }, { "created", m.created }, { "source", m.source }, { "layers", config_layers } };
    std::string config_bytes = config.dump();
    STRATA_TRY(push_bytes(*client, config_bytes, result.stats));
    json manifest { { "schemaVersion", 2 }, { "mediaType", kOciManifestType }, { "artifactType", kImageArtifactType },
        { "config", { { "mediaType", kImageConfigType }, { "digest", digest_of(config_bytes) }, { "size", config_bytes.size() } } },
        { "layers", layers }, { "annotations", { { "org.opencontainers.image.created", m.created }, { "org.strata.name", m.name } } } };
    std::string bytes = manifest.dump();
    std::string target = ref.tag.empty() ? digest_of(bytes) : ref.tag;
    if (!ref.digest.empty() && ref.digest != digest_of(bytes))
        return make_error(ErrorKind::Usage, "the reference pins digest " + ref.digest + " but the image's manifest is " + digest_of(bytes));
    STRATA_TRY(digest, client->put_manifest(target, kOciManifestType, bytes));
    result.digest = digest;
    tidy_registry_files(store);
    return result;
}

Result<PullResult> pull_image(Store& store, Reference const& ref, std::string name, TransferOptions const& options)
{
    if (name.empty())
        name = ref.repository.substr(ref.repository.rfind('/') + 1);
    STRATA_TRY(check_object_name(name));
    if (store.get(ObjectKind::Image, name))
        return make_error(ErrorKind::Exists, "an image named '" + name + "' already exists");
    STRATA_TRY(client, RegistryClient::create(ref, options.client));
    STRATA_TRY(got, get_strata_manifest(*client, kImageArtifactType, kImageConfigType));
    PullResult result;
    result.digest = got.digest;
    auto const& config = got.config;
    if (!config.contains("size") || !config["size"].is_number_unsigned())
        return bad(ref.to_string() + ": the image config has no size");
    std::uint64_t image_size = config["size"].get<std::uint64_t>();
    auto const& jl = got.manifest["layers"];
    if (jl.empty() || jl.size() > archive::kMaxEntries)
        return bad(ref.to_string() + ": an image has 1 to " + std::to_string(kMaxManifestLayers) + " layers");
    std::vector<WantedLayer> descriptors;
    for (auto const& l : jl) {
        STRATA_TRY(w, parse_layer_descriptor(l, image_size, ref.to_string()));
        descriptors.push_back(w);
    }
    STRATA_TRY(wanted, group_parts(std::move(descriptors), ref.to_string()));
    if (wanted.size() > kMaxManifestLayers)
        return bad(ref.to_string() + ": an image has 1 to " + std::to_string(kMaxManifestLayers) + " layers");
    // Accepted: the registry answered and the manifest holds. Only now may the
    // pull tidy what earlier ones left.
    STRATA_TRY(ensure_dirs(store));
    tidy_registry_files(store);
    Fetched f;
    for (std::size_t i = 0; i < wanted.size(); ++i)
        STRATA_TRY(fetch_layer(store, *client, wanted[i], i == 0, f, result.stats, options));
    ObjectManifest m { ObjectKind::Image, name, image_size, f.ids, utc_now(), "registry:" + ref.registry + "/" + ref.repository + "@" + got.digest,
        {}, config.contains("description") && config["description"].is_string() ? config["description"].get<std::string>() : "",
        config.contains("labels") && config["labels"].is_object() ? config["labels"] : json::object() };
    STRATA_TRY(save_records(store, f));
    STRATA_TRY(image, store.adopt_image(m, f.fresh));
    recorded(f);
    result.image = image;
    return result;
}

} // namespace strata::registry
