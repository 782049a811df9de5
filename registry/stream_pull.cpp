// A pull's layer in one pass (REGISTRY.md, "Pull"): the layer file is laid out
// from the blobs' chunk indexes first (as a lazy pull does), then the chunks it
// lacks are fetched as segments of consecutive chunks with parallel Range
// requests, each on its own connection; a worker decompresses each chunk of its
// segment, checks its SHA-256 and writes it at its place in the layer file, then
// marks it written in the pull's chunk file. Nothing goes through a temporary
// copy of the blob. The layer's content digest is computed by the calling
// thread meanwhile, in order, each MiB as soon as the chunks under it are
// written (it reads them back from the page cache), so freezing the layer does
// not read it all again.
//
// The layer file and its chunk file are named by the layer's blobs, under
// tmp/registry/, and stay there until the image is recorded: a pull that fails
// or is killed leaves them, and a repeated pull reopens them, checks the chunks
// marked written against their SHA-256 again (a mark may have reached the disk
// before the data it stands for) and fetches only the others. A layer that was
// complete (frozen) is taken once checked in full (frozen_layer_holds). A pull holds <key>.lock from before it
// looks at those files until it is over (Fetched::locks), so a second pull of
// the same blobs is refused meanwhile. What a pull left and nobody repeated
// within a week is removed (remove_stale_pulls).
#include "registry/transfer_detail.h"

#include "base/fd.h"
#include "base/sha256.h"
#include "imaging/store_io.h"

#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <limits>
#include <mutex>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace strata::registry::detail {

namespace {

// Connections (and workers) per layer: the registry serves several blob ranges
// at once, and decompression and SHA-256 run on several cores.
constexpr unsigned kConnections = 4;
// Bytes of blob per Range request: large enough that a request's latency is
// small beside its transfer, small enough that a dropped connection loses
// little, four of them keep the connections busy, and the first segments are
// written early: the content digest (computed in order) starts on them while
// the rest arrive.
constexpr std::uint64_t kSegmentBytes = 4 << 20;
// How far past the content digest's place in the layer file the workers may
// start a segment: room for every worker's segment (a 4 MiB segment of a
// well-compressed layer holds several times that much data), not the layer.
constexpr std::uint64_t kLeadBytes = 48 << 20;

// Chunks [first, first + count) of the layer's list, all in blob part, at bytes
// [from, to) of it.
struct Segment {
    std::uint32_t part { 0 };
    std::uint64_t from { 0 }, to { 0 };
    std::size_t first { 0 }, count { 0 };
};

// Segments over the chunks not yet written: runs of consecutive missing chunks
// of one blob, cut at about kSegmentBytes.
std::vector<Segment> plan_segments(std::vector<LazyChunk> const& chunks, std::vector<char> const& written)
{
    std::vector<Segment> out;
    std::optional<Segment> s;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        auto const& c = chunks[i];
        if (s && (written[i] || c.blob != s->part || c.at + c.stored - s->from > kSegmentBytes)) {
            out.push_back(*s);
            s.reset();
        }
        if (written[i])
            continue;
        if (!s)
            s = Segment { c.blob, c.at, c.at, i, 0 };
        s->to = c.at + c.stored;
        ++s->count;
    }
    if (s)
        out.push_back(*s);
    return out;
}

class StreamPull {
public:
    StreamPull(std::vector<PartIndex> const& parts, std::vector<LazyChunk> const& chunks, int fd, int marks_fd, std::vector<char> written,
        TransferStats& stats)
        : m_parts(parts)
        , m_chunks(chunks)
        , m_segments(plan_segments(chunks, written))
        , m_fd(fd)
        , m_marks_fd(marks_fd)
        , m_stats(stats)
        , m_done(std::move(written))
    {
        advance_prefix();
    }

    std::size_t segments() const { return m_segments.size(); }

    // Runs a worker on each client and computes the content digest of layer
    // on this thread meanwhile.
    [[nodiscard]] Result<Sha256> run(std::vector<RegistryClient*> const& clients, Layer const& layer)
    {
        std::vector<std::thread> workers;
        for (auto* c : clients)
            workers.emplace_back([this, c] { work(*c); });
        auto digest = content_digest(layer);
        if (!digest)
            fail(digest.error());
        for (auto& t : workers)
            t.join();
        if (m_error)
            return *m_error;
        return digest;
    }

private:
    void fail(Error const& e)
    {
        std::lock_guard lock(m_mu);
        if (!m_error)
            m_error = e;
        m_cv.notify_all();
    }

    void advance_prefix()
    {
        while (m_done_prefix < m_done.size() && m_done[m_done_prefix])
            ++m_done_prefix;
    }

    void work(RegistryClient& client)
    {
        ZSTD_DCtx* dctx = ZSTD_createDCtx();
        std::vector<std::byte> raw;
        for (;;) {
            std::size_t i = 0;
            {
                // A segment is taken only when it starts less than kLeadBytes
                // past what the content digest has read: the workers then
                // leave the hashing thread its share of the cores all along,
                // rather than racing ahead and leaving it alone at the end.
                std::unique_lock lock(m_mu);
                m_cv.wait(lock, [&] {
                    if (m_error || m_next >= m_segments.size())
                        return true;
                    std::uint64_t start = m_chunks[m_segments[m_next].first].file_offset;
                    return start <= m_hashed || start - m_hashed < kLeadBytes;
                });
                if (m_error || m_next >= m_segments.size())
                    break;
                i = m_next++;
            }
            auto const& s = m_segments[i];
            auto fetched = fetch(client, s, dctx, raw);
            if (!fetched) {
                fail(fetched.error());
                break;
            }
            // Marked once written (not synced: a repeated pull checks what the
            // marks say before it trusts them).
            std::vector<char> ones(s.count, 1);
            if (auto m = pwrite_all(m_marks_fd, std::as_bytes(std::span(ones)), s.first); !m) {
                fail(m.error().context("mark chunks written"));
                break;
            }
            std::lock_guard lock(m_mu);
            m_stats.bytes_downloaded += s.to - s.from;
            for (std::size_t c = s.first; c < s.first + s.count; ++c)
                m_done[c] = 1;
            advance_prefix();
            m_cv.notify_all();
        }
        ZSTD_freeDCtx(dctx);
    }

    // Fetches a segment and writes its chunks, each checked, into the layer file.
    Status fetch(RegistryClient& client, Segment const& s, ZSTD_DCtx* dctx, std::vector<std::byte>& raw)
    {
        auto const& blob = m_parts[s.part].blob->blob;
        STRATA_TRY(bytes, client.fetch_range(blob, s.from, s.to - s.from));
        for (std::size_t i = s.first; i < s.first + s.count; ++i) {
            auto const& c = m_chunks[i];
            raw.resize(static_cast<std::size_t>(c.length));
            std::size_t n = ZSTD_decompressDCtx(dctx, raw.data(), raw.size(), bytes.data() + (c.at - s.from), static_cast<std::size_t>(c.stored));
            auto where = " (chunk at layer offset " + std::to_string(c.offset) + " of blob " + blob + ")";
            if (ZSTD_isError(n) || n != raw.size())
                return bad("layer blob: a chunk does not decompress to its length" + where + ": refused");
            if (archive::sha256(raw) != c.digest)
                return bad("layer blob: a chunk's SHA-256 does not match" + where + ": refused");
            // Blocks of zeros stay holes in the file: they read as zeros, as
            // they would if written, and take no space.
            for (std::size_t b = 0; b < raw.size();) {
                auto block = [&](std::size_t at) { return std::span<std::byte const>(raw).subspan(at, std::min<std::size_t>(kBlockSize, raw.size() - at)); };
                if (is_zero(block(b))) {
                    b += kBlockSize;
                    continue;
                }
                std::size_t e = b + kBlockSize;
                while (e < raw.size() && !is_zero(block(e)))
                    e += kBlockSize;
                e = std::min(e, raw.size());
                STRATA_TRY(pwrite_all(m_fd, std::span<std::byte const>(raw).subspan(b, e - b), c.file_offset + b));
                b = e;
            }
        }
        if (s.count > 0) {
            // Start writing the segment back now: freezing the layer then waits
            // for little more than the last segments.
            auto const& a = m_chunks[s.first];
            auto const& z = m_chunks[s.first + s.count - 1];
            (void)::sync_file_range(m_fd, static_cast<off_t>(a.file_offset), static_cast<off_t>(z.file_offset + z.length - a.file_offset),
                SYNC_FILE_RANGE_WRITE);
        }
        return ok();
    }

    // The layer's content digest as Layer::compute_digest defines it, each
    // piece of data read once the chunks under it are written.
    Result<Sha256> content_digest(Layer const& layer)
    {
        Sha256Hasher hash;
        hash_u64(hash, layer.size());
        auto extents = extents_of(layer.map());
        std::vector<std::byte> buf(1 << 20);
        for (auto const& run : digest_runs(extents)) {
            hash_digest_run(hash, run);
            if (run.kind != MapKind::Data)
                continue;
            for (std::size_t k = run.begin; k < run.end; ++k) {
                std::uint64_t at = mapval::offset(extents[k].value), end = at + (extents[k].count << kBlockShift);
                // Piece by piece, each as soon as the chunks under it are
                // written: one extent may hold most of the layer (lay_out
                // places consecutive chunks back to back), and waiting for
                // all of it would leave the whole hash for after the download.
                while (at < end) {
                    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - at));
                    // The chunks placed before at + n (placements ascend with the list).
                    auto need = static_cast<std::size_t>(std::lower_bound(m_chunks.begin(), m_chunks.end(), at + n,
                                                             [](LazyChunk const& c, std::uint64_t v) { return c.file_offset < v; })
                        - m_chunks.begin());
                    {
                        std::unique_lock lock(m_mu);
                        // Where the digest reads now: the workers may start
                        // segments up to kLeadBytes past it (so always the one
                        // holding these chunks).
                        if (at > m_hashed) {
                            m_hashed = at;
                            m_cv.notify_all();
                        }
                        m_cv.wait(lock, [&] { return m_error || m_done_prefix >= need; });
                        if (m_error)
                            return *m_error;
                    }
                    STRATA_TRY(pread_all(m_fd, std::span(buf).first(n), at));
                    hash.update(buf.data(), n);
                    at += n;
                }
            }
        }
        set_hashed(std::numeric_limits<std::uint64_t>::max());
        return Sha256 { hash.finish() };
    }

    void set_hashed(std::uint64_t at)
    {
        std::lock_guard lock(m_mu);
        m_hashed = at;
        m_cv.notify_all();
    }

    std::vector<PartIndex> const& m_parts;
    std::vector<LazyChunk> const& m_chunks;
    std::vector<Segment> m_segments;
    int m_fd, m_marks_fd;
    TransferStats& m_stats;

    std::mutex m_mu;
    std::condition_variable m_cv;
    std::optional<Error> m_error;
    std::size_t m_next { 0 };  // the next segment to fetch
    std::uint64_t m_hashed { 0 }; // the layer file offset the content digest reads at
    std::vector<char> m_done;  // per chunk: written
    std::size_t m_done_prefix { 0 };
};

// The chunks of parts placed where an existing layer's map puts them, or
// nothing when that map is not the one lay_out makes from these indexes.
std::optional<std::vector<LazyChunk>> placed_chunks(Layer const& layer, std::vector<PartIndex> const& parts)
{
    std::vector<LazyChunk> chunks;
    std::uint64_t last = 0;
    for (std::uint32_t k = 0; k < parts.size(); ++k) {
        auto const& [p, rec] = parts[k];
        for (auto const& c : rec.chunks) {
            std::uint64_t first = (p->offset + c.offset) / kBlockSize, count = (c.length + kBlockSize - 1) / kBlockSize;
            auto look = layer.map().lookup(first);
            if (mapval::kind(look.value) != MapKind::Data || look.run < count || mapval::offset(look.value) < last)
                return std::nullopt;
            last = mapval::offset(look.value);
            chunks.push_back(LazyChunk { p->offset + c.offset, c.length, c.at, c.stored, last, c.digest, k });
        }
    }
    return chunks;
}

// Checks the chunks marked written against their SHA-256 (on several threads);
// those that fail are unmarked (in marks_fd too, unless it is -1) to be fetched
// again.
Status recheck(int fd, int marks_fd, std::vector<LazyChunk> const& chunks, std::vector<char>& written)
{
    std::atomic<std::size_t> next { 0 };
    std::mutex mu;
    std::optional<Error> error;
    auto work = [&] {
        std::vector<std::byte> buf;
        for (std::size_t i; (i = next++) < chunks.size();) {
            if (!written[i])
                continue;
            buf.resize(static_cast<std::size_t>(chunks[i].length));
            auto r = pread_all(fd, buf, chunks[i].file_offset);
            if (r && archive::sha256(buf) == chunks[i].digest)
                continue;
            written[i] = 0;
            char zero = 0;
            if (marks_fd < 0)
                continue;
            if (auto m = pwrite_all(marks_fd, std::as_bytes(std::span(&zero, 1)), i); !m) {
                std::lock_guard lock(mu);
                error = m.error();
            }
        }
    };
    std::vector<std::thread> threads;
    for (unsigned k = 0; k < kConnections; ++k)
        threads.emplace_back(work);
    for (auto& t : threads)
        t.join();
    if (error)
        return *error;
    return ok();
}

// A map's extents with neighbours that continue each other joined (the same
// kind, data that follows on in the file), so two maps of the same mapping
// compare equal however their runs were cut.
std::vector<Extent> joined_extents(ExtentMap const& map)
{
    std::vector<Extent> out;
    map.for_each([&](Extent const& e) {
        if (!out.empty()) {
            auto& last = out.back();
            if (last.first + last.count == e.first && mapval::kind(last.value) == mapval::kind(e.value)
                && mapval::advance(last.value, last.count) == e.value) {
                last.count += e.count;
                return;
            }
        }
        out.push_back(e);
    });
    return out;
}

// Whether a frozen layer an earlier pull left for these blobs holds exactly
// what they make: the mapping lay_out gives their indexes (each chunk's blocks
// where the file places them, the zero ranges, nothing else), every chunk's
// bytes with its SHA-256 from the index (checked against the manifest), and a
// header digest that is the content digest of those bytes. The file sits under
// tmp/ where anything of the user's may have written it since, and its header
// digest is what the store would record and later pulls look layers up by:
// taken unchecked, a changed file would become the image's layer.
bool frozen_layer_holds(Layer const& layer, std::vector<PartIndex> const& parts)
{
    auto placed = placed_chunks(layer, parts);
    if (!placed || !layer.digest())
        return false;
    ExtentMap expected;
    std::size_t next = 0;
    for (auto const& [p, rec] : parts) {
        for (std::size_t i = 0; i < rec.chunks.size(); ++i, ++next) {
            auto const& c = (*placed)[next];
            expected.assign(c.offset / kBlockSize, (c.length + kBlockSize - 1) / kBlockSize, mapval::data(c.file_offset));
        }
        for (auto const& z : rec.zeros) {
            std::uint64_t first = (p->offset + z.offset + kBlockSize - 1) / kBlockSize, end = (p->offset + z.offset + z.length) / kBlockSize;
            if (end > first)
                expected.assign(first, end - first, mapval::kZero);
        }
    }
    auto a = joined_extents(expected), b = joined_extents(layer.map());
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].first != b[i].first || a[i].count != b[i].count || a[i].value != b[i].value)
            return false;
    std::vector<char> all(placed->size(), 1);
    if (!recheck(layer.fd(), -1, *placed, all) || std::find(all.begin(), all.end(), 0) != all.end())
        return false;
    auto digest = layer.compute_digest();
    return digest && digest.value() == *layer.digest();
}

// tmp/registry/<key>: the name of a layer's partial pull, from its blobs.
std::string resume_base(Store& store, WantedLayer const& w)
{
    std::string key;
    for (auto const& p : w.parts)
        key += p.blob + "@" + std::to_string(p.offset) + "+" + std::to_string(p.length) + ";";
    return store.tmp_dir() + "/registry/" + hex_of(digest_of(key));
}

// Takes the lock of a layer's files under tmp/registry/ (<key>.lock), or
// nothing (Busy) when another open file holds it. A lock file is removed only
// by whoever holds it, so one whose name leads elsewhere once locked was
// removed meanwhile: that lock guards nothing and the name is tried again.
Result<std::optional<Fd>> try_lock_pull(std::string const& lock_path)
{
    for (;;) {
        Fd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
        if (!fd.valid())
            return errno_error("open '" + lock_path + "'");
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK)
                return std::optional<Fd>();
            return errno_error("lock '" + lock_path + "'");
        }
        struct stat held {}, named {};
        if (::fstat(fd.get(), &held) != 0)
            return errno_error("stat '" + lock_path + "'");
        if (::stat(lock_path.c_str(), &named) == 0 && named.st_dev == held.st_dev && named.st_ino == held.st_ino)
            return std::optional<Fd>(std::move(fd));
    }
}

} // namespace

PullLocks::~PullLocks()
{
    for (auto const& [path, fd] : held)
        ::unlink(path.c_str());
}

void remove_stale_pulls(std::string const& store_root, std::int64_t older_than_s)
{
    std::string dir = store_root + "/tmp/registry";
    auto names = dir_names(dir);
    auto ends = [](std::string const& n, std::string const& tail) { return n.size() > tail.size() && n.compare(n.size() - tail.size(), tail.size(), tail) == 0; };
    auto old = [&](std::string const& path) {
        struct stat st {};
        return ::stat(path.c_str(), &st) != 0 || st.st_mtime + older_than_s <= ::time(nullptr);
    };
    std::vector<std::string> bases;
    for (auto const& n : names) {
        if (ends(n, ".blob")) {
            // A download at work holds download_blob's flock on its file.
            std::string path = dir + "/" + n;
            Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
            if (fd.valid() && old(path) && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
                ::unlink(path.c_str());
            continue;
        }
        for (char const* tail : { ".layer", ".chunks", ".lock" })
            if (ends(n, tail))
                bases.push_back(dir + "/" + n.substr(0, n.size() - std::char_traits<char>::length(tail)));
    }
    std::sort(bases.begin(), bases.end());
    bases.erase(std::unique(bases.begin(), bases.end()), bases.end());
    for (auto const& base : bases) {
        // A streamed layer's files go together, under their lock: a pull at
        // work holds it, and one that starts now waits for none of them.
        auto lock = try_lock_pull(base + ".lock");
        if (!lock || !lock.value())
            continue;
        if (old(base + ".layer") && old(base + ".chunks")) {
            ::unlink((base + ".layer").c_str());
            ::unlink((base + ".chunks").c_str());
        }
        ::unlink((base + ".lock").c_str());
    }
}

Result<std::pair<LayerId, Sha256>> stream_layer(Store& store, RegistryClient& client, WantedLayer const& w, Fetched& f, TransferStats& stats)
{
    STRATA_TRY(parts, fetch_indexes(client, w, stats));
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    std::string base = resume_base(store, w);
    std::string path = base + ".layer", marks_path = base + ".chunks", lock_path = base + ".lock";
    // Held until this pull is over (f.locks): without it a second pull could
    // remove this one's files between its look and its Layer's own lock, or
    // adopt the finished layer this one may still remove. The same blobs
    // twice in one image find the lock held already.
    auto& held = f.locks.held;
    if (std::find_if(held.begin(), held.end(), [&](auto const& h) { return h.first == lock_path; }) == held.end()) {
        STRATA_TRY(lock, try_lock_pull(lock_path));
        if (!lock)
            return make_error(ErrorKind::Busy, "layer blob " + w.parts[0].blob + " is being pulled by another strata process");
        held.emplace_back(lock_path, std::move(*lock));
    }
    // Made a frozen layer under tmp/<id> (what Store::adopt_image takes) by a
    // hard link, so the file at path stays for a repeated pull until the image
    // is recorded (recorded() removes it then with the blob files).
    auto adopt = [&](Layer const& layer) -> Result<std::pair<LayerId, Sha256>> {
        LayerId id = layer.id();
        std::string done = store.tmp_dir() + "/" + id.to_string();
        ::unlink(done.c_str());
        if (::link(path.c_str(), done.c_str()) != 0)
            return errno_error("link '" + path + "' to '" + done + "'");
        f.temps.paths.push_back(done);
        f.blob_files.push_back(path);
        return std::pair { id, *layer.digest() };
    };

    // What an earlier pull of these blobs left, if anything.
    std::unique_ptr<Layer> layer;
    std::vector<LazyChunk> chunks;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        {
            // Through the page cache: the checks read it with plain preads.
            auto frozen = Layer::open(path, LayerOpen::ReadOnly, *engine, LayerOptions { .cache = CacheMode::Writeback });
            if (frozen && frozen.value()->frozen()) {
                if (frozen.value()->size() == w.layer_size && frozen_layer_holds(*frozen.value(), parts))
                    return adopt(*frozen.value());
                // Not what these blobs make: pulled afresh below.
                std::fprintf(stderr, "strata: the complete layer an earlier pull left at '%s' does not hold what its blobs do; "
                                     "fetching it again\n", path.c_str());
            }
        }
        auto reopened = Layer::open(path, LayerOpen::Writable, *engine, LayerOptions { .cache = CacheMode::Writeback });
        if (!reopened && reopened.error().kind == ErrorKind::Busy)
            return make_error(ErrorKind::Busy, "layer blob " + w.parts[0].blob + " is being pulled by another strata process");
        Fd marks(::open(marks_path.c_str(), O_RDONLY | O_CLOEXEC));
        struct stat ms {};
        if (reopened && reopened.value()->size() == w.layer_size && marks.valid() && ::fstat(marks.get(), &ms) == 0) {
            auto placed = placed_chunks(*reopened.value(), parts);
            if (placed && static_cast<std::uint64_t>(ms.st_size) == placed->size()) {
                layer = std::move(reopened.value());
                chunks = std::move(*placed);
            }
        }
    }
    bool resumed = layer != nullptr;
    if (!resumed) {
        ::unlink(path.c_str());
        ::unlink(marks_path.c_str());
        STRATA_TRY(created, Layer::create(path, w.layer_size, LayerId::random(), *engine, LayerOptions { .cache = CacheMode::Writeback }));
        layer = std::move(created);
        STRATA_TRY(placed, lay_out(*layer, parts));
        chunks = std::move(placed);
        // The map is made durable before any data or mark refers to it.
        STRATA_TRY(layer->flush());
        Fd marks(::open(marks_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!marks.valid() || ::ftruncate(marks.get(), static_cast<off_t>(chunks.size())) != 0)
            return errno_error("create '" + marks_path + "'");
    }
    // The data goes through the layer's own descriptor: the file it maps and
    // freezes, whatever its name leads to by now.
    int fd = layer->fd();
    Fd marks(::open(marks_path.c_str(), O_RDWR | O_CLOEXEC));
    if (!marks.valid())
        return errno_error("open '" + marks_path + "'");
    std::vector<char> written(chunks.size(), 0);
    if (resumed) {
        STRATA_TRY(pread_all(marks.get(), std::as_writable_bytes(std::span(written)), 0));
        for (auto& c : written)
            c = c == 1 ? 1 : 0;
        STRATA_TRY(recheck(fd, marks.get(), chunks, written));
    }
    StreamPull pull(parts, chunks, fd, marks.get(), std::move(written), stats);
    std::vector<std::unique_ptr<RegistryClient>> more;
    std::vector<RegistryClient*> clients { &client };
    for (std::size_t k = 1; k < std::min<std::size_t>(kConnections, pull.segments()); ++k) {
        STRATA_TRY(c, client.clone());
        clients.push_back(c.get());
        more.push_back(std::move(c));
    }
    STRATA_TRY(digest, pull.run(clients, *layer));
    // Freezing syncs the data (written through the layer's descriptor) before
    // the header that marks the layer frozen; the digest goes in a header after it.
    STRATA_TRY(layer->freeze(false));
    STRATA_TRY(layer->record_digest(digest));
    ::unlink(marks_path.c_str());
    // The summary counts the blobs this pull fetched chunks of; a layer an
    // earlier pull completed (above) fetched none.
    stats.blobs_downloaded += parts.size();
    return adopt(*layer);
}

} // namespace strata::registry::detail
