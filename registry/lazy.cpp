#include "registry/lazy.h"

#include "base/fd.h"
#include "base/thread.h"
#include "imaging/archive/archive_format.h"
#include "imaging/store_io.h"
#include "registry/client.h"
#include "store/store.h"

#include <nlohmann/json.hpp>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace strata::registry {

using nlohmann::json;

std::string lazy_dir(std::string const& store_root) { return store_root + "/registry/lazy"; }

static std::string info_path(std::string const& root, LayerId const& id) { return Store::lazy_description_path(root, id); }
static std::string present_path(std::string const& root, LayerId const& id) { return lazy_dir(root) + "/" + id.to_string() + ".present"; }

bool layer_is_lazy(std::string const& store_root, LayerId const& id)
{
    return ::access(info_path(store_root, id).c_str(), F_OK) == 0;
}

void remove_lazy(std::string const& store_root, LayerId const& id)
{
    // The description goes first: without it the layer counts as local.
    ::unlink(info_path(store_root, id).c_str());
    ::unlink(present_path(store_root, id).c_str());
}

Status save_lazy(std::string const& store_root, LazyLayerInfo const& info)
{
    for (auto const& d : { store_root + "/registry", lazy_dir(store_root) })
        if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
            return errno_error("create '" + d + "'");
    json chunks = json::array();
    for (auto const& c : info.chunks)
        chunks.push_back({ c.offset, c.length, c.at, c.stored, c.file_offset, archive::to_hex(c.digest), c.blob });
    json blobs = json::array();
    for (auto const& b : info.blobs)
        blobs.push_back({ b.digest, b.size });
    json j { { "layer", info.id.to_string() }, { "registry", info.registry }, { "repository", info.repository },
        { "plain_http", info.plain_http }, { "ca_cert", info.ca_cert }, { "tls_verify", info.tls_verify }, { "blobs", blobs },
        { "layer_size", info.layer_size }, { "content", info.content }, { "chunks", chunks } };
    // The presence file first: a description never exists without it.
    {
        std::string p = present_path(store_root, info.id);
        Fd fd(::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd.valid())
            return errno_error("create '" + p + "'");
        if (::ftruncate(fd.get(), static_cast<off_t>(info.chunks.size())) != 0 || ::fsync(fd.get()) != 0)
            return errno_error("size '" + p + "'");
    }
    std::string text = j.dump() + "\n";
    STRATA_TRY(f, AtomicFile::create(info_path(store_root, info.id)));
    STRATA_TRY(pwrite_all(f.fd(), std::as_bytes(std::span(text.data(), text.size())), 0));
    return f.commit();
}

Result<std::optional<LazyLayerInfo>> load_lazy(std::string const& store_root, LayerId const& id)
{
    std::string p = info_path(store_root, id);
    std::ifstream in(p);
    if (!in)
        return std::optional<LazyLayerInfo>();
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    auto bad = [&] { return make_error(ErrorKind::BadInput, "the lazy layer description '" + p + "' is damaged"); };
    if (!j.is_object() || !j.contains("chunks") || !j["chunks"].is_array())
        return bad();
    LazyLayerInfo info;
    info.id = id;
    try {
        info.registry = j.at("registry").get<std::string>();
        info.repository = j.at("repository").get<std::string>();
        info.plain_http = j.at("plain_http").get<bool>();
        info.ca_cert = j.value("ca_cert", std::string());
        info.tls_verify = j.value("tls_verify", true);
        for (auto const& b : j.at("blobs"))
            info.blobs.push_back(LazyBlob { b.at(0).get<std::string>(), b.at(1).get<std::uint64_t>() });
        info.layer_size = j.at("layer_size").get<std::uint64_t>();
        info.content = j.at("content").get<std::string>();
        for (auto const& c : j["chunks"]) {
            LazyChunk k;
            k.offset = c.at(0).get<std::uint64_t>();
            k.length = c.at(1).get<std::uint64_t>();
            k.at = c.at(2).get<std::uint64_t>();
            k.stored = c.at(3).get<std::uint64_t>();
            k.file_offset = c.at(4).get<std::uint64_t>();
            auto d = archive::parse_hex_digest(c.at(5).get<std::string>());
            if (!d)
                return bad();
            k.digest = d.value();
            k.blob = c.at(6).get<std::uint32_t>();
            if (k.blob >= info.blobs.size())
                return bad();
            info.chunks.push_back(k);
        }
    } catch (json::exception const&) {
        return bad();
    }
    return std::optional<LazyLayerInfo>(std::move(info));
}

LazyOptions lazy_options_from_env()
{
    LazyOptions o;
    if (char const* d = ::getenv("STRATA_LAZY_FILL_DELAY_MS"); d != nullptr && *d != '\0')
        o.fill_delay_ms = static_cast<unsigned>(std::strtoul(d, nullptr, 10));
    if (char const* f = ::getenv("STRATA_LAZY_FILL"); f != nullptr && std::string(f) == "0")
        o.fill = false;
    if (char const* p = ::getenv("STRATA_LAZY_PREFETCH_KB"); p != nullptr && *p != '\0')
        o.prefetch_bytes = std::strtoull(p, nullptr, 10) << 10;
    return o;
}

namespace {

enum class ChunkState : std::uint8_t { Absent, Queued, Present };

// One incomplete layer as a fetcher sees it: its description, its file (for
// writing fetched chunks) and its presence file.
struct RemoteLayer {
    LazyLayerInfo info;
    std::string root;
    Fd fd;
    Fd present_fd;
    std::vector<ChunkState> state;
    std::vector<std::uint32_t> failures;
    std::size_t present { 0 };
    // Chunks whose bytes are in the file (and served) but not yet synced: their
    // presence bytes are written after the next fdatasync, never before.
    std::vector<std::size_t> unsynced;
    bool completed { false };

    [[nodiscard]] static Result<std::unique_ptr<RemoteLayer>> open(std::string const& root, std::string const& layer_path, LazyLayerInfo info)
    {
        auto r = std::make_unique<RemoteLayer>();
        r->root = root;
        r->fd = Fd(::open(layer_path.c_str(), O_RDWR | O_CLOEXEC));
        if (!r->fd.valid())
            return errno_error("open layer '" + layer_path + "' to fill it");
        std::string pp = present_path(root, info.id);
        r->present_fd = Fd(::open(pp.c_str(), O_RDWR | O_CLOEXEC));
        if (!r->present_fd.valid())
            return errno_error("open '" + pp + "'");
        std::vector<std::uint8_t> bytes(info.chunks.size());
        if (!bytes.empty())
            STRATA_TRY(pread_all(r->present_fd.get(), std::as_writable_bytes(std::span(bytes)), 0));
        r->state.resize(info.chunks.size(), ChunkState::Absent);
        r->failures.resize(info.chunks.size(), 0);
        for (std::size_t i = 0; i < bytes.size(); ++i)
            if (bytes[i] == 1) {
                r->state[i] = ChunkState::Present;
                ++r->present;
            }
        r->info = std::move(info);
        return r;
    }

    // The chunk holding layer byte offset, if any chunk does.
    std::optional<std::size_t> chunk_at(std::uint64_t offset) const
    {
        auto const& c = info.chunks;
        auto it = std::upper_bound(c.begin(), c.end(), offset, [](std::uint64_t o, LazyChunk const& k) { return o < k.offset; });
        if (it == c.begin())
            return std::nullopt;
        --it;
        if (offset >= it->offset + it->length)
            return std::nullopt;
        return static_cast<std::size_t>(it - c.begin());
    }
};

Result<std::unique_ptr<RegistryClient>> client_for(LazyLayerInfo const& info, unsigned attempts)
{
    Reference ref;
    ref.registry = info.registry;
    ref.repository = info.repository;
    ref.digest = info.blobs.empty() ? std::string() : info.blobs[0].digest;
    ClientOptions o;
    STRATA_TRY(creds, find_credentials(info.registry, ""));
    o.credentials = creds;
    o.plain_http = info.plain_http;
    o.ca_cert = info.ca_cert;
    o.tls_verify = info.tls_verify;
    o.max_attempts = attempts;
    o.backoff_ms = 100;
    // A guest's read waits on these fetches (and a VMM's exit on the last one):
    // an unreachable registry must fail them in seconds, not minutes.
    o.connect_timeout_s = 5;
    o.stall_timeout_s = 10;
    return RegistryClient::create(ref, o);
}

// Fetches chunks [first, first + count) of a layer (adjacent in the blob) with one
// Range request, checks each and writes it into the layer file, then (with
// sync) syncs it. Returns the bytes fetched.
Result<std::uint64_t> fetch_chunks(RegistryClient& client, RemoteLayer& layer, std::size_t first, std::size_t count, bool sync)
{
    auto const& chunks = layer.info.chunks;
    std::uint64_t from = chunks[first].at, to = chunks[first + count - 1].at + chunks[first + count - 1].stored;
    auto const& blob = layer.info.blobs[chunks[first].blob].digest;
    STRATA_TRY(bytes, client.fetch_range(blob, from, to - from));
    std::vector<std::byte> raw;
    for (std::size_t i = first; i < first + count; ++i) {
        auto const& c = chunks[i];
        raw.resize(static_cast<std::size_t>(c.length));
        std::size_t n = ZSTD_decompress(raw.data(), raw.size(), bytes.data() + (c.at - from), static_cast<std::size_t>(c.stored));
        auto where = " (chunk at layer offset " + std::to_string(c.offset) + " of blob " + blob + ")";
        if (ZSTD_isError(n) || n != raw.size())
            return make_error(ErrorKind::BadInput, std::string("the registry sent a chunk that does not decompress") + where);
        if (archive::sha256(raw) != c.digest)
            return make_error(ErrorKind::BadInput, "the registry sent a chunk whose SHA-256 does not match its index" + where);
        STRATA_TRY(pwrite_all(layer.fd.get(), raw, c.file_offset));
    }
    if (sync && ::fdatasync(layer.fd.get()) != 0)
        return errno_error("sync a filled layer");
    return to - from;
}

// Runs of chunks adjacent in the blob, starting at first, within max stored bytes,
// whose state is Absent (for the fill).
std::size_t run_length(RemoteLayer const& l, std::size_t first, std::uint64_t max_bytes)
{
    auto const& c = l.info.chunks;
    std::size_t n = 1;
    std::uint64_t bytes = c[first].stored;
    while (first + n < c.size() && l.state[first + n] == ChunkState::Absent && c[first + n].blob == c[first].blob
        && c[first + n].at == c[first + n - 1].at + c[first + n - 1].stored
        && bytes + c[first + n].stored <= max_bytes) {
        bytes += c[first + n].stored;
        ++n;
    }
    return n;
}

class LazyDisk final : public BlockBackend {
public:
    LazyDisk(std::unique_ptr<Chain> chain, std::vector<std::unique_ptr<RemoteLayer>> layers, LazyOptions options)
        : m_chain(std::move(chain))
        , m_layers(std::move(layers))
        , m_options(options)
    {
    }

    [[nodiscard]] Status start()
    {
        m_wake = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        m_epoll = Fd(::epoll_create1(EPOLL_CLOEXEC));
        if (!m_wake.valid() || !m_epoll.valid())
            return errno_error("eventfd/epoll for a lazy disk");
        for (int fd : { m_wake.get(), m_chain->completion_fd() }) {
            epoll_event ev {};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            if (::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
                return errno_error("epoll_ctl for a lazy disk");
        }
        // The boot blocks' chunks, queued before any guest read: the workers
        // fetch them as soon as their clients are made, while the guest starts.
        // (They count as demand fetches; a failed one fails no guest request
        // that did not wait for it.)
        if (m_options.prefetch_bytes > 0) {
            std::lock_guard lock(m_mu);
            BlockRequest boot;
            boot.offset = 0;
            boot.length = std::min<std::uint64_t>(m_options.prefetch_bytes, size()) / kBlockSize * kBlockSize;
            std::vector<Need> wanted;
            if (boot.length > 0)
                needs(boot, wanted);
            for (auto const& n : wanted) {
                auto& l = *m_layers[n.layer];
                if (l.state[n.chunk] == ChunkState::Absent) {
                    l.state[n.chunk] = ChunkState::Queued;
                    m_demand.emplace_back(n.layer, n.chunk);
                }
            }
        }
        // Fetcher threads (base/thread.h): a VMM that filters its threads' system
        // calls gives them the network the guest's device thread lacks.
        for (unsigned i = 0; i < std::max(1U, m_options.workers); ++i)
            m_workers.push_back(start_thread(ThreadKind::Fetcher, "lazy-fetch", [this] { demand_loop(); }));
        if (m_options.fill)
            m_workers.push_back(start_thread(ThreadKind::Fetcher, "lazy-fill", [this] { fill_loop(); }));
        return ok();
    }

    ~LazyDisk() override
    {
        {
            std::lock_guard lock(m_mu);
            m_stop = true;
        }
        m_cv.notify_all();
        for (auto& t : m_workers)
            t.join();
        {
            // What was fetched on demand since the last sync is kept.
            std::unique_lock lock(m_mu);
            persist(lock);
        }
        auto const& s = m_stats;
        std::string line = "strata: lazy disk: " + std::to_string(s.held_requests) + " guest requests waited for chunks ("
            + std::to_string(s.eio_requests) + " failed), " + std::to_string(s.demand_fetches) + " fetches of "
            + std::to_string(s.demand_bytes) + " bytes on demand, " + std::to_string(s.fill_fetches) + " fill fetches of "
            + std::to_string(s.fill_bytes) + " bytes, " + std::to_string(s.failed_fetches) + " fetches failed\n";
        std::fputs(line.c_str(), stderr);
    }

    LazyDiskState state()
    {
        std::lock_guard lock(m_mu);
        LazyDiskState out;
        out.stats = m_stats;
        for (auto const& lp : m_layers) {
            auto const& l = *lp;
            for (std::size_t i = 0; i < l.state.size(); ++i) {
                auto const& c = l.info.chunks[i];
                bool here = l.completed || l.state[i] == ChunkState::Present;
                out.progress.chunks_total += 1;
                out.progress.bytes_total += c.length;
                out.progress.blob_bytes_total += c.stored;
                out.progress.chunks_present += here ? 1 : 0;
                out.progress.bytes_present += here ? c.length : 0;
                out.progress.blob_bytes_present += here ? c.stored : 0;
            }
        }
        return out;
    }

    std::uint64_t size() const override { return m_chain->size(); }
    bool read_only() const override { return m_chain->read_only(); }
    unsigned queue_depth() const override { return m_chain->queue_depth(); }
    int completion_fd() const override { return m_epoll.get(); }
    Status kick() override { return m_chain->kick(); }

    Status submit(BlockRequest const& r) override
    {
        if (r.offset % 512 != 0 || r.length % 512 != 0 || r.offset + r.length > size() || r.offset + r.length < r.offset)
            return m_chain->submit(r); // the chain refuses it with its own message
        if (m_all_present.load(std::memory_order_acquire))
            return m_chain->submit(r);
        Held h;
        h.request = r;
        h.iov.assign(r.iov.begin(), r.iov.end());
        std::lock_guard lock(m_mu);
        needs(r, h.needs);
        if (h.needs.empty())
            return m_chain->submit(r);
        ++m_stats.held_requests;
        for (auto& n : h.needs) {
            auto& l = *m_layers[n.layer];
            n.failures = l.failures[n.chunk];
            if (l.state[n.chunk] == ChunkState::Absent) {
                l.state[n.chunk] = ChunkState::Queued;
                m_demand.emplace_back(n.layer, n.chunk);
            }
        }
        h.request.iov = std::span<iovec const>(h.iov);
        m_held.push_back(std::move(h));
        m_cv.notify_all();
        return ok();
    }

    std::size_t reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait) override
    {
        for (;;) {
            eventfd_t v;
            (void)::eventfd_read(m_wake.get(), &v);
            std::size_t n = release(on_complete);
            n += m_chain->reap(on_complete, false);
            if (n > 0 || !wait)
                return n;
            bool held;
            {
                std::lock_guard lock(m_mu);
                held = !m_held.empty();
            }
            if (!held)
                return m_chain->reap(on_complete, true);
            epoll_event ev;
            (void)::epoll_wait(m_epoll.get(), &ev, 1, 100);
        }
    }

private:
    struct Need {
        std::size_t layer { 0 };
        std::size_t chunk { 0 };
        std::uint32_t failures { 0 };
    };
    struct Held {
        BlockRequest request;
        std::vector<iovec> iov;
        std::vector<Need> needs;
    };

    // The missing chunks a request depends on (m_mu held): for a read, those
    // holding any block it reads; for a write, discard or write-zeroes, those of
    // a partial first or last block (the chain reads the rest of such a block
    // from below).
    void needs(BlockRequest const& r, std::vector<Need>& out)
    {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
        if (r.op == BlockOp::Read) {
            ranges.emplace_back(r.offset / kBlockSize, (r.offset + r.length + kBlockSize - 1) / kBlockSize);
        } else if (r.op == BlockOp::Write || r.op == BlockOp::Discard || r.op == BlockOp::WriteZeroes) {
            // (The chain writes zeros into the partial blocks of a discard or
            // write-zeroes, completing them from below as for a write.)
            if (r.offset % kBlockSize != 0)
                ranges.emplace_back(r.offset / kBlockSize, r.offset / kBlockSize + 1);
            if ((r.offset + r.length) % kBlockSize != 0)
                ranges.emplace_back((r.offset + r.length) / kBlockSize, (r.offset + r.length) / kBlockSize + 1);
        }
        if (ranges.empty())
            return;
        refresh_index();
        auto const& map = m_chain->merged_map();
        for (auto [b, end] : ranges) {
            while (b < end) {
                auto look = map.lookup(b);
                std::uint64_t run = std::min<std::uint64_t>(look.run, end - b);
                if (mapval::kind(look.value) == MapKind::Data) {
                    unsigned li = mapval::layer(look.value);
                    if (li < m_by_index.size() && m_by_index[li] != kNoLayer) {
                        auto& l = *m_layers[m_by_index[li]];
                        for (std::uint64_t x = b; x < b + run;) {
                            auto c = l.chunk_at(x * kBlockSize);
                            if (!c) {
                                ++x;
                                continue;
                            }
                            if (l.state[*c] != ChunkState::Present
                                && std::none_of(out.begin(), out.end(), [&](Need const& n) { return n.layer == m_by_index[li] && n.chunk == *c; }))
                                out.push_back(Need { m_by_index[li], *c, 0 });
                            auto const& k = l.info.chunks[*c];
                            x = std::max(x + 1, (k.offset + k.length + kBlockSize - 1) / kBlockSize);
                        }
                    }
                }
                b += run;
            }
        }
    }

    // Chain layer index -> our layer (captures push new tops; indices below stay).
    void refresh_index()
    {
        if (m_by_index.size() == m_chain->depth())
            return;
        m_by_index.assign(m_chain->depth(), kNoLayer);
        for (std::size_t i = 0; i < m_chain->depth(); ++i)
            for (std::size_t k = 0; k < m_layers.size(); ++k)
                if (m_layers[k]->info.id == m_chain->layer(i).id())
                    m_by_index[i] = k;
    }

    // Sends held requests whose chunks arrived to the chain; fails those whose
    // fetch failed. Returns how many completed here.
    std::size_t release(std::function<void(BlockCompletion&&)> const& on_complete)
    {
        std::vector<Held> ready;
        std::vector<BlockCompletion> failed;
        {
            std::lock_guard lock(m_mu);
            for (auto it = m_held.begin(); it != m_held.end();) {
                bool all = true, broken = false;
                for (auto const& n : it->needs) {
                    auto const& l = *m_layers[n.layer];
                    all = all && l.state[n.chunk] == ChunkState::Present;
                    broken = broken || l.failures[n.chunk] != n.failures;
                }
                if (all) {
                    ready.push_back(std::move(*it));
                    it = m_held.erase(it);
                } else if (broken) {
                    ++m_stats.eio_requests;
                    failed.push_back(BlockCompletion { it->request.tag,
                        make_error(ErrorKind::Io, "a lazily pulled chunk could not be fetched from the registry: " + m_last_error) });
                    it = m_held.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& h : ready) {
            h.request.iov = std::span<iovec const>(h.iov);
            auto s = m_chain->submit(h.request);
            if (!s && s.error().kind == ErrorKind::Busy) {
                // The chain's queue is full: hold it until a completion frees a slot.
                std::lock_guard lock(m_mu);
                m_retry.push_back(std::move(h));
                continue;
            }
            if (!s)
                failed.push_back(BlockCompletion { h.request.tag, s.error() });
        }
        if (!ready.empty())
            (void)m_chain->kick();
        {
            std::lock_guard lock(m_mu);
            for (auto& h : m_retry) {
                h.needs.clear();
                m_held.push_back(std::move(h));
            }
            if (!m_retry.empty())
                (void)::eventfd_write(m_wake.get(), 1);
            m_retry.clear();
        }
        for (auto& c : failed)
            on_complete(std::move(c));
        return failed.size();
    }

    void wake() { (void)::eventfd_write(m_wake.get(), 1); }

    void demand_loop()
    {
        std::vector<std::unique_ptr<RegistryClient>> clients(m_layers.size());
        // Made now, while the guest boots: the first client loads libcurl and
        // its TLS library, which a guest's first read would otherwise wait for.
        // (No request yet: an unreachable registry must fail reads, not delay them.)
        for (std::size_t li = 0; li < m_layers.size(); ++li)
            if (auto made = client_for(m_layers[li]->info, 2))
                clients[li] = std::move(made.value());
        std::unique_lock lock(m_mu);
        for (;;) {
            m_cv.wait(lock, [this] { return m_stop || !m_demand.empty(); });
            if (m_stop)
                return;
            auto [li, first] = m_demand.front();
            m_demand.pop_front();
            auto& l = *m_layers[li];
            // Take the queued chunks adjacent to this one too: one request for a
            // guest read that spans several chunks.
            std::size_t count = 1;
            auto const& c = l.info.chunks;
            while (first + count < c.size() && c[first + count].blob == c[first].blob
                && c[first + count].at == c[first + count - 1].at + c[first + count - 1].stored && count < 16) {
                auto it = std::find(m_demand.begin(), m_demand.end(), std::pair { li, first + count });
                if (it == m_demand.end())
                    break;
                m_demand.erase(it);
                ++count;
            }
            lock.unlock();
            Result<std::uint64_t> got = make_error(ErrorKind::Internal, "no client");
            if (!clients[li]) {
                auto made = client_for(l.info, 2);
                if (made)
                    clients[li] = std::move(made.value());
                else
                    got = made.error();
            }
            // The guest's read waits for the bytes, not for their sync: that
            // happens below, batched, before the chunks are marked present.
            if (clients[li])
                got = fetch_chunks(*clients[li], l, first, count, false);
            lock.lock();
            finish(l, first, count, got, true, false);
            lock.unlock();
            wake();
            lock.lock();
            // The presence bytes of what was fetched on demand are written
            // after a sync, at most every kPersistMs while the guest keeps
            // missing chunks (each sync of the layer file costs its writes
            // time), else when the disk closes or the fill syncs.
            auto now = std::chrono::steady_clock::now();
            if (m_demand.empty() && now - m_last_persist >= std::chrono::milliseconds(kPersistMs)) {
                m_last_persist = now;
                persist(lock);
            }
        }
    }

    // Syncs the layers' unsynced chunks and marks them present on disk (called
    // with lock held; drops it around the I/O).
    void persist(std::unique_lock<std::mutex>& lock)
    {
        for (auto& lp : m_layers) {
            auto& l = *lp;
            if (l.unsynced.empty())
                continue;
            std::vector<std::size_t> todo;
            todo.swap(l.unsynced);
            lock.unlock();
            bool synced = ::fdatasync(l.fd.get()) == 0;
            if (synced)
                for (auto i : todo) {
                    std::uint8_t one = 1;
                    (void)pwrite_all(l.present_fd.get(), std::as_bytes(std::span(&one, 1)), i);
                }
            lock.lock();
            if (!synced) {
                l.unsynced.insert(l.unsynced.end(), todo.begin(), todo.end());
                continue;
            }
            maybe_complete(l);
        }
    }

    // A layer whose chunks are all present and synced is local now (m_mu held).
    void maybe_complete(RemoteLayer& l)
    {
        if (l.present != l.state.size() || !l.unsynced.empty() || l.completed)
            return;
        (void)::fdatasync(l.present_fd.get());
        remove_lazy(l.root, l.info.id);
        l.completed = true;
        if (std::all_of(m_layers.begin(), m_layers.end(), [](auto const& x) { return x->completed; }))
            m_all_present.store(true, std::memory_order_release);
    }

    // Records the outcome of a fetch (m_mu held); synced: its data was synced.
    void finish(RemoteLayer& l, std::size_t first, std::size_t count, Result<std::uint64_t> const& got, bool demand, bool synced)
    {
        if (got) {
            for (std::size_t i = first; i < first + count; ++i) {
                if (synced) {
                    std::uint8_t one = 1;
                    (void)pwrite_all(l.present_fd.get(), std::as_bytes(std::span(&one, 1)), i);
                } else {
                    l.unsynced.push_back(i);
                }
                if (l.state[i] != ChunkState::Present)
                    ++l.present;
                l.state[i] = ChunkState::Present;
            }
            (demand ? m_stats.demand_fetches : m_stats.fill_fetches) += 1;
            (demand ? m_stats.demand_bytes : m_stats.fill_bytes) += got.value();
            maybe_complete(l);
        } else {
            ++m_stats.failed_fetches;
            m_last_error = got.error().message;
            for (std::size_t i = first; i < first + count; ++i) {
                if (l.state[i] == ChunkState::Queued)
                    l.state[i] = ChunkState::Absent;
                ++l.failures[i];
            }
            std::fprintf(stderr, "strata: lazy pull: %s\n", got.error().message.c_str());
        }
    }

    void fill_loop()
    {
        std::unique_lock lock(m_mu);
        if (m_cv.wait_for(lock, std::chrono::milliseconds(m_options.fill_delay_ms), [this] { return m_stop; }))
            return;
        std::vector<std::unique_ptr<RegistryClient>> clients(m_layers.size());
        unsigned backoff = 500;
        for (std::size_t li = 0; li < m_layers.size(); ++li) {
            auto& l = *m_layers[li];
            for (std::size_t i = 0; i < l.state.size();) {
                if (m_stop)
                    return;
                if (l.state[i] != ChunkState::Absent) {
                    ++i;
                    continue;
                }
                std::size_t count = run_length(l, i, m_options.fill_request_bytes);
                for (std::size_t k = i; k < i + count; ++k)
                    l.state[k] = ChunkState::Queued;
                lock.unlock();
                Result<std::uint64_t> got = make_error(ErrorKind::Internal, "no client");
                if (!clients[li]) {
                    auto made = client_for(l.info, 3);
                    if (made)
                        clients[li] = std::move(made.value());
                    else
                        got = made.error();
                }
                if (clients[li])
                    got = fetch_chunks(*clients[li], l, i, count, true);
                lock.lock();
                finish(l, i, count, got, false, true);
                // Chunks fetched on demand and not yet marked: their bytes were
                // synced with the fill's (one file), so mark them now.
                if (got && !l.unsynced.empty())
                    persist(lock);
                lock.unlock();
                wake();
                lock.lock();
                if (!got) {
                    // The registry is away: try again later, the same chunks.
                    if (m_cv.wait_for(lock, std::chrono::milliseconds(backoff), [this] { return m_stop; }))
                        return;
                    backoff = std::min(backoff * 2, 30000U);
                    continue;
                }
                backoff = 500;
                i += count;
            }
        }
    }

    static constexpr std::size_t kNoLayer = ~std::size_t { 0 };
    static constexpr unsigned kPersistMs = 1000;

    std::unique_ptr<Chain> m_chain;
    std::vector<std::unique_ptr<RemoteLayer>> m_layers;
    LazyOptions m_options;
    Fd m_wake, m_epoll;
    std::vector<std::size_t> m_by_index;
    std::atomic<bool> m_all_present { false };

    std::mutex m_mu;
    std::condition_variable m_cv;
    bool m_stop { false };
    std::chrono::steady_clock::time_point m_last_persist { std::chrono::steady_clock::now() };
    std::deque<std::pair<std::size_t, std::size_t>> m_demand;
    std::deque<Held> m_held;
    std::vector<Held> m_retry;
    std::string m_last_error;
    LazyStats m_stats;
    std::vector<std::thread> m_workers;
};

} // namespace

std::optional<LazyDiskState> lazy_disk_state(BlockBackend& backend)
{
    auto* disk = dynamic_cast<LazyDisk*>(&backend);
    if (disk == nullptr)
        return std::nullopt;
    return disk->state();
}

Result<std::optional<LazyProgress>> lazy_progress(std::string const& store_root, LayerId const& id)
{
    STRATA_TRY(info, load_lazy(store_root, id));
    if (!info)
        return std::optional<LazyProgress>();
    std::vector<std::uint8_t> marks(info->chunks.size(), 0);
    std::string pp = present_path(store_root, id);
    Fd fd(::open(pp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error("open '" + pp + "'");
    if (!marks.empty())
        STRATA_TRY(pread_all(fd.get(), std::as_writable_bytes(std::span(marks)), 0));
    LazyProgress p;
    for (std::size_t i = 0; i < marks.size(); ++i) {
        auto const& c = info->chunks[i];
        bool here = marks[i] == 1;
        p.chunks_total += 1;
        p.bytes_total += c.length;
        p.blob_bytes_total += c.stored;
        p.chunks_present += here ? 1 : 0;
        p.bytes_present += here ? c.length : 0;
        p.blob_bytes_present += here ? c.stored : 0;
    }
    return std::optional<LazyProgress>(p);
}

Result<std::unique_ptr<BlockBackend>> wrap_lazy(std::string const& store_root, std::unique_ptr<Chain> chain, Chain*& chain_out,
    LazyOptions const& options)
{
    chain_out = chain.get();
    std::vector<std::unique_ptr<RemoteLayer>> layers;
    for (std::size_t i = 0; i < chain->depth(); ++i) {
        auto& layer = chain->layer(i);
        STRATA_TRY(info, load_lazy(store_root, layer.id()));
        if (!info)
            continue;
        STRATA_TRY(remote, RemoteLayer::open(store_root, layer.path(), std::move(*info)));
        layers.push_back(std::move(remote));
    }
    if (layers.empty())
        return std::unique_ptr<BlockBackend>(std::move(chain));
    auto disk = std::make_unique<LazyDisk>(std::move(chain), std::move(layers), options);
    STRATA_TRY(disk->start());
    return std::unique_ptr<BlockBackend>(std::move(disk));
}

Result<std::uint64_t> fill_layer(std::string const& store_root, LayerId const& id)
{
    STRATA_TRY(info, load_lazy(store_root, id));
    if (!info)
        return std::uint64_t { 0 };
    std::string path = store_root + "/layers/" + id.to_string();
    STRATA_TRY(layer, RemoteLayer::open(store_root, path, std::move(*info)));
    STRATA_TRY(client, client_for(layer->info, 5));
    std::uint64_t fetched = 0;
    for (std::size_t i = 0; i < layer->state.size();) {
        if (layer->state[i] != ChunkState::Absent) {
            ++i;
            continue;
        }
        std::size_t count = run_length(*layer, i, 16 << 20);
        STRATA_TRY(got, fetch_chunks(*client, *layer, i, count, true));
        for (std::size_t k = i; k < i + count; ++k) {
            std::uint8_t one = 1;
            STRATA_TRY(pwrite_all(layer->present_fd.get(), std::as_bytes(std::span(&one, 1)), k));
            layer->state[k] = ChunkState::Present;
        }
        fetched += got;
        i += count;
    }
    (void)::fdatasync(layer->present_fd.get());
    remove_lazy(store_root, id);
    return fetched;
}

} // namespace strata::registry
