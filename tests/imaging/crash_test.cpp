// Crash and power-loss tests for the layer format's invariant (FORMAT.md):
// a recording engine logs every write and flush of the top layer, and every
// change of its size and every hole punched in it (preallocation, space given
// back after discards and old checkpoints); the workload ends with a freeze. The
// log is replayed onto the file as it was created, up to every flush point plus
// random subsets (and a torn write) of what came after, and at every point of
// the freeze — the way dm-log-writes is used — and each replayed file must open,
// check clean, and hold for every sector either the value durable at that flush
// or a value written after it; once the freeze has completed, the layer is
// frozen. Fault injection
// fails each metadata write in turn with EIO or ENOSPC: the flush must fail
// cleanly, a later flush must succeed, and the layer must reopen consistent.
#include "tests/imaging/layer_test_util.h"

#include <algorithm>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <set>
#include <unistd.h>

using namespace strata;
using namespace strata::test;

namespace {

constexpr std::uint64_t kDisk = 2 << 20;
constexpr std::uint64_t kSectors = kDisk / 512;

// Each sector written by write `id` holds (id, sector) repeated: any sector read
// back names the write it came from, and garbage is detected.
void tag(std::span<std::byte> buf, std::uint64_t first_sector, std::uint64_t id)
{
    for (std::size_t s = 0; s < buf.size() / 512; ++s)
        for (std::size_t w = 0; w < 512; w += 16) {
            std::uint64_t sec = first_sector + s;
            std::memcpy(buf.data() + s * 512 + w, &id, 8);
            std::memcpy(buf.data() + s * 512 + w + 8, &sec, 8);
        }
}

// The write id a sector holds; UINT64_MAX for garbage.
std::uint64_t id_of(std::span<std::byte const> sector, std::uint64_t index)
{
    if (all_zero(sector))
        return 0;
    std::uint64_t id, sec;
    std::memcpy(&id, sector.data(), 8);
    std::memcpy(&sec, sector.data() + 8, 8);
    for (std::size_t w = 0; w < 512; w += 16)
        if (std::memcmp(sector.data() + w, sector.data(), 16) != 0)
            return UINT64_MAX;
    return sec == index ? id : UINT64_MAX;
}

struct Event {
    std::uint64_t first_sector, sectors, id; // id 0: zeroed (discard/write-zeroes)
};

struct Workload {
    std::vector<std::uint64_t> cur = std::vector<std::uint64_t>(kSectors, 0);
    std::vector<Event> events;
    std::uint64_t next_id = 2;
};

std::string slurp(std::string const& path)
{
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// A frozen base holding write id 1 in its first half.
void make_base(std::string const& path, Workload& w)
{
    auto engine = make_engine(EngineKind::Sync);
    auto layer = Layer::create(path, kDisk, LayerId::random(), *engine.value());
    REQUIRE(layer);
    std::vector<std::byte> buf(kDisk / 2);
    tag(buf, 0, 1);
    REQUIRE(layer.value()->write_blocks(0, buf));
    REQUIRE(layer.value()->freeze(false));
    std::fill(w.cur.begin(), w.cur.begin() + kSectors / 2, 1);
}

// The disk the crash cases write: a frozen base (make_base) and an empty top
// with a small journal, so that flushes also cross checkpoints and header
// switches. Returns the top's data_start.
struct CrashDisk {
    std::string base, top;
    Workload w;
    std::uint64_t data_start { 0 };
    explicit CrashDisk(TempDir const& dir)
        : base(dir.path("base"))
        , top(dir.path("top"))
    {
        make_base(base, w);
        auto e = make_engine(EngineKind::Sync);
        auto l = Layer::create(top, kDisk, LayerId::random(), *e.value(), LayerOptions { .journal_length = 16384 });
        REQUIRE(l);
        data_start = l.value()->header().data_start;
    }
};

// One batch of non-overlapping requests at queue depth; returns false if any failed.
bool batch(Chain& chain, Workload& w, std::mt19937& rng)
{
    std::vector<std::vector<std::byte>> bufs;
    std::vector<iovec> iovs(8);
    std::vector<BlockRequest> reqs;
    std::set<std::uint64_t> slots;
    for (unsigned i = 0; i < 6; ++i) {
        std::uint64_t slot = rng() % (kDisk / 32768);
        if (!slots.insert(slot).second)
            continue;
        bool sub_block = rng() % 5 == 0;
        std::uint64_t off = slot * 32768 + (sub_block ? (rng() % 8) * 512 : (rng() % 4) * 4096);
        std::uint64_t len = sub_block ? 512 * (1 + rng() % 3) : 4096 * (1 + rng() % 4);
        Event e { off / 512, len / 512, 0 };
        BlockRequest r { BlockOp::Write, off, len, {}, i };
        if (rng() % 6 == 0) {
            r.op = BlockOp::Discard;
        } else {
            e.id = w.next_id++;
            bufs.emplace_back(len);
            tag(bufs.back(), e.first_sector, e.id);
            iovs[reqs.size()] = iovec { bufs.back().data(), len };
            r.iov = { &iovs[reqs.size()], 1 };
        }
        reqs.push_back(r);
        w.events.push_back(e);
        std::fill_n(w.cur.begin() + static_cast<std::ptrdiff_t>(e.first_sector), e.sectors, e.id);
    }
    for (auto const& r : reqs)
        REQUIRE(chain.submit(r));
    REQUIRE(chain.kick());
    std::size_t done = 0;
    bool all_ok = true;
    while (done < reqs.size())
        done += chain.reap([&](BlockCompletion&& c) { all_ok = all_ok && static_cast<bool>(c.status); }, true);
    return all_ok;
}

// Opens base + top, checks the top clean and every sector against what is allowed.
// A frozen top (a replay that reached the freeze's header) is opened read-only.
void verify(std::string const& base, std::string const& top, std::vector<std::uint64_t> const& durable,
    std::vector<Event> const& events, std::size_t events_after, std::string const& what, bool must_be_frozen = false)
{
    INFO(what);
    bool frozen = false;
    {
        auto e = make_engine(EngineKind::Sync);
        auto l = Layer::open(top, LayerOpen::ReadOnly, *e.value());
        REQUIRE_MESSAGE(l, (l ? std::string() : l.error().message));
        frozen = l.value()->frozen();
    }
    if (must_be_frozen)
        CHECK(frozen);
    auto chain = Chain::open({ base, top }, ChainOptions { .read_only = frozen });
    REQUIRE_MESSAGE(chain, (chain ? std::string() : chain.error().message));
    auto report = chain.value()->top().check(RepairMode::None);
    REQUIRE(report);
    CHECK(report.value().corruptions == 0);
    std::vector<std::set<std::uint64_t>> later(kSectors);
    for (std::size_t i = events_after; i < events.size(); ++i)
        for (std::uint64_t s = 0; s < events[i].sectors; ++s)
            later[events[i].first_sector + s].insert(events[i].id);
    auto bytes = read_all(*chain.value(), 0, kDisk);
    for (std::uint64_t s = 0; s < kSectors; ++s) {
        std::uint64_t id = id_of(std::span<std::byte const>(bytes).subspan(s * 512, 512), s);
        if (id != durable[s] && !later[s].count(id))
            FAIL("sector " << s << " holds write " << id << ", durable was " << durable[s]);
    }
}

} // namespace

TEST_CASE("crash: replay to every flush point plus random subsets of later writes keeps the invariant")
{
    TempDir dir;
    CrashDisk disk(dir);
    std::string const& base = disk.base;
    std::string const& top = disk.top;
    Workload& w = disk.w;
    std::string created = slurp(top);
    struct FlushPoint {
        std::size_t log_end, events;
        std::vector<std::uint64_t> durable;
    };
    std::vector<FlushPoint> points { { 0, 0, w.cur } };
    std::vector<RecordingEngine::Entry> log;
    FileId top_file = 0;
    std::size_t freeze_point = 0; // the flush point the freeze starts from
    {
        RecordingEngine* rec = nullptr;
        auto chain = open_chain({ base, top }, rec);
        top_file = chain->top().file();
        std::mt19937 rng(7);
        for (unsigned b = 0; b < 60; ++b) {
            REQUIRE(batch(*chain, w, rng));
            if (rng() % 3 == 0 || b == 59) {
                REQUIRE(flush_sync(*chain));
                points.push_back({ rec->log.size(), w.events.size(), w.cur });
            }
        }
        // The freeze (a snapshot's or a capture's): checkpoint, digest, header.
        freeze_point = points.size() - 1;
        REQUIRE(chain->top().freeze(true));
        points.push_back({ rec->log.size(), w.events.size(), w.cur });
        log = rec->log;
    }
    REQUIRE(points.size() > 5);
    // What the replay covers beyond data writes, or it would prove nothing about them.
    auto count = [&](RecordingEngine::Change change) {
        return std::count_if(log.begin(), log.end(), [&](auto const& e) { return !e.flush && e.file == top_file && e.change == change; });
    };
    CHECK(count(RecordingEngine::Change::Resize) > 0);
    CHECK(count(RecordingEngine::Change::Punch) > 0);
    REQUIRE(points[freeze_point + 1].log_end > points[freeze_point].log_end + 2);

    std::mt19937 rng(99);
    std::string replay = dir.path("replay");
    std::vector<std::byte> created_bytes(created.size());
    std::memcpy(created_bytes.data(), created.data(), created.size());
    for (std::size_t k = 0; k < points.size(); ++k) {
        std::size_t window_end = k + 1 < points.size() ? points[k + 1].log_end : log.size();
        // Inside the freeze, crash at every position of its log; elsewhere at the
        // flush point and at random positions of the window up to the next.
        std::size_t variants = k == freeze_point ? window_end - points[k].log_end + 1 : 6;
        for (std::size_t variant = 0; variant < variants; ++variant) {
            // The replay is a real (sparse) file, so that size changes and holes
            // land as they would.
            Fd fd(::open(replay.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            REQUIRE(fd.valid());
            REQUIRE(pwrite_all(fd.get(), created_bytes, 0));
            auto apply = [&](RecordingEngine::Entry const& e, std::size_t bytes) {
                if (e.flush || e.file != top_file)
                    return;
                switch (e.change) {
                case RecordingEngine::Change::Write:
                    REQUIRE(pwrite_all(fd.get(), std::span<std::byte const>(e.data.data(), bytes), e.offset));
                    break;
                case RecordingEngine::Change::Resize:
                    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(e.offset)) == 0);
                    break;
                case RecordingEngine::Change::Punch:
                    REQUIRE(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(e.offset),
                                static_cast<off_t>(e.length))
                        == 0);
                    break;
                }
            };
            // Crash at point c. Changes logged before the submission of any sync
            // completed before c are durable; the rest of those before c land or
            // not (a write possibly torn).
            std::size_t c = k == freeze_point ? points[k].log_end + variant
                : variant == 0                ? points[k].log_end
                                              : points[k].log_end + rng() % (window_end - points[k].log_end + 1);
            std::size_t durable_end = 0;
            for (std::size_t i = 0; i < c; ++i)
                if (log[i].flush && log[i].covers != SIZE_MAX)
                    durable_end = std::max(durable_end, log[i].covers);
            for (std::size_t i = 0; i < c; ++i) {
                unsigned dice = static_cast<unsigned>(rng() % 8);
                if (i >= durable_end && dice < 3)
                    continue;
                // Sometimes only a prefix of the sectors lands (a torn write).
                std::size_t n = log[i].data.size();
                apply(log[i], i >= durable_end && dice == 3 ? (n / 512 / 2) * 512 : n);
            }
            fd = Fd();
            bool const completed_freeze = k + 1 == points.size() && variant == 0;
            verify(base, replay, points[k].durable, w.events, points[k].events,
                "flush point " + std::to_string(k) + (k == freeze_point ? " (the freeze)" : "") + " variant "
                    + std::to_string(variant),
                completed_freeze);
        }
    }
}

TEST_CASE("crash: EIO or ENOSPC at each metadata write fails the flush cleanly and the layer reopens consistent")
{
    for (int err : { EIO, ENOSPC }) {
        // The loop ends when a run injects nothing; a fault predicate that never
        // matched would end it at once having tested nothing, so count the runs
        // that injected and the flushes that failed.
        unsigned injected = 0;
        unsigned failed_flushes = 0;
        for (unsigned nth = 0;; ++nth) {
            CAPTURE(err);
            CAPTURE(nth);
            TempDir dir;
            CrashDisk disk(dir);
            std::string const& base = disk.base;
            std::string const& top = disk.top;
            Workload& w = disk.w;
            std::uint64_t const data_start = disk.data_start;
            FaultEngine* fault = nullptr;
            auto chain = open_chain({ base, top }, fault);
            unsigned seen = 0;
            bool fired = false;
            fault->fault = [&](IoRequest const& r) {
                if (r.op != IoOp::Write)
                    return 0;
                bool meta = r.offset < data_start;
                if (!meta && r.iov.size() == 1 && r.iov[0].iov_len >= 8)
                    meta = std::memcmp(r.iov[0].iov_base, "STRCKPT1", 8) == 0;
                if (meta && seen++ == nth) {
                    fired = true;
                    return -err;
                }
                return 0;
            };
            std::vector<std::uint64_t> durable = w.cur;
            std::size_t durable_events = 0;
            bool failed_flush = false;
            std::mt19937 rng(nth + 1);
            for (unsigned b = 0; b < 24; ++b) {
                REQUIRE(batch(*chain, w, rng));
                if (b % 2 == 1) {
                    auto s = flush_sync(*chain);
                    if (s) {
                        durable = w.cur;
                        durable_events = w.events.size();
                    } else {
                        failed_flush = true;
                        CHECK(s.error().kind == (err == EIO ? ErrorKind::Io : ErrorKind::NoSpace));
                    }
                }
            }
            chain.reset();
            if (!fired)
                break; // every metadata write has had its turn
            ++injected;
            failed_flushes += failed_flush ? 1 : 0;
            CHECK(failed_flush);
            verify(base, top, durable, w.events, durable_events, "fault at metadata write " + std::to_string(nth));
            // The failure left nothing behind that a later flush cannot finish.
            CHECK(nth < 200);
        }
        CAPTURE(err);
        // Each flush writes at least a journal record and a header: a workload of
        // twelve flushes has many metadata writes, each of which had its turn.
        CHECK(injected >= 12);
        CHECK(failed_flushes == injected);
    }
}

TEST_CASE("crash: a failed fdatasync fails the layer: later flushes and writes are refused, not reported durable (fsyncgate)")
{
    TempDir dir;
    CrashDisk disk(dir);
    Workload& w = disk.w;
    FaultEngine* fault = nullptr;
    auto chain = open_chain({ disk.base, disk.top }, fault);
    std::mt19937 rng(3);
    REQUIRE(batch(*chain, w, rng));
    REQUIRE(flush_sync(*chain));
    std::vector<std::uint64_t> const durable = w.cur;
    std::size_t const durable_events = w.events.size();

    // The next fdatasync fails once, as a writeback error is reported once; a
    // retried sync would succeed with the pages it could not write dropped.
    bool failed_once = false;
    fault->fault = [&](IoRequest const& r) {
        if (r.op == IoOp::Fdatasync && !failed_once) {
            failed_once = true;
            return -EIO;
        }
        return 0;
    };
    REQUIRE(batch(*chain, w, rng));
    auto first = flush_sync(*chain);
    REQUIRE(failed_once);
    REQUIRE(!first);
    CHECK(first.error().kind == ErrorKind::Io);
    // The retry is refused, not a success over lost data...
    auto again = flush_sync(*chain);
    REQUIRE(!again);
    CHECK(again.error().kind == ErrorKind::Io);
    CHECK(again.error().message.find("fdatasync") != std::string::npos);
    // ...and so is every later write, in place or not.
    Workload scratch = w;
    CHECK_FALSE(batch(*chain, scratch, rng));
    CHECK(chain->top().usable().error().message.find("takes no more writes") != std::string::npos);
    chain.reset();
    // Reopened, the layer holds at least what the last good flush made durable.
    verify(disk.base, disk.top, durable, w.events, durable_events, "after a failed fdatasync");
}
