// Chain tests on real files and a real io_uring: merged-map reads at depth,
// zero entries hiding lower layers, no copy-on-write amplification, the chain
// operations (snapshot on a live chain, commit, flatten, resize) against a
// reference model, and concurrent requests at queue depth.
#include "tests/imaging/layer_test_util.h"

#include <map>

using namespace strata;
using namespace strata::test;

static constexpr std::uint64_t kDisk = 8 << 20;

TEST_CASE("chain: one guest read at depth 8 costs one backend read, holes cost none")
{
    TempDir dir;
    std::vector<std::string> paths;
    for (unsigned i = 0; i < 8; ++i) {
        paths.push_back(dir.path("l" + std::to_string(i)));
        // Layer i holds blocks [i*16, i*16+16): each read below must find its layer directly.
        make_frozen_layer(paths.back(), kDisk, 16, 100 + i, i * 16);
    }
    CountingEngine* counter = nullptr;
    auto chain = open_chain(paths, counter, true);
    CHECK(chain->depth() == 8);
    for (unsigned i = 0; i < 8; ++i) {
        counter->reset();
        auto got = read_all(*chain, (i * 16 + 3) * kBlockSize, 2 * kBlockSize);
        CHECK(counter->reads == 1);
        auto want = fill(16 * kBlockSize, 100 + i);
        CHECK(std::equal(got.begin(), got.end(), want.begin() + 3 * kBlockSize));
    }
    counter->reset();
    auto hole = read_all(*chain, 200 * kBlockSize, 64 * kBlockSize);
    CHECK(counter->reads == 0);
    CHECK(all_zero(hole));
}

TEST_CASE("chain: a 4 KiB write into a fresh overlay over a full base reads nothing and writes 4 KiB")
{
    TempDir dir;
    std::string base = dir.path("base");
    std::string top = dir.path("top");
    make_frozen_layer(base, kDisk, kDisk / kBlockSize, 7);
    {
        auto e = make_engine(EngineKind::Sync);
        REQUIRE(Layer::create(top, kDisk, LayerId::random(), *e.value()));
    }
    CountingEngine* counter = nullptr;
    auto chain = open_chain({ base, top }, counter);
    counter->reset();
    for (unsigned i = 0; i < 16; ++i)
        REQUIRE(write_sync(*chain, i * 65536ull, fill(4096, i)));
    CHECK(counter->reads == 0);
    CHECK(chain->stats().rmw_reads == 0);
    CHECK(counter->writes == 16);
    CHECK(counter->bytes_written == 16 * 4096);
    CHECK(counter->syncs == 0); // no metadata write until a flush
    counter->reset();
    REQUIRE(flush_sync(*chain));
    CHECK(counter->writes == 1); // one journal record per flush
    // A 512-byte write into a block owned below reads that one block only.
    REQUIRE(write_sync(*chain, 4096 * 3 + 512, fill(512, 99)));
    CHECK(chain->stats().rmw_reads == 1);
    auto got = read_all(*chain, 4096 * 3, 4096);
    auto base_block = fill(kDisk, 7);
    auto patch = fill(512, 99);
    CHECK(std::equal(got.begin(), got.begin() + 512, base_block.begin() + 4096 * 3));
    CHECK(std::equal(got.begin() + 512, got.begin() + 1024, patch.begin()));
    CHECK(std::equal(got.begin() + 1024, got.end(), base_block.begin() + 4096 * 3 + 1024));
}

TEST_CASE("chain: discard and write-zeroes hide lower layers and write no data")
{
    TempDir dir;
    std::string base = dir.path("base");
    std::string top = dir.path("top");
    make_frozen_layer(base, kDisk, 256, 3);
    {
        auto e = make_engine(EngineKind::Sync);
        REQUIRE(Layer::create(top, kDisk, LayerId::random(), *e.value()));
    }
    {
        CountingEngine* counter = nullptr;
        auto chain = open_chain({ base, top }, counter);
        counter->reset();
        REQUIRE(discard_sync(*chain, 16 * kBlockSize, 32 * kBlockSize));
        REQUIRE(write_zeroes_sync(*chain, 100 * kBlockSize, 8 * kBlockSize));
        CHECK(counter->writes == 0);
        CHECK(all_zero(read_all(*chain, 16 * kBlockSize, 32 * kBlockSize)));
        // A partial-block discard zeroes just that part.
        REQUIRE(discard_sync(*chain, 200 * kBlockSize + 1024, 1024));
        auto blk = read_all(*chain, 200 * kBlockSize, kBlockSize);
        auto want = fill(256 * kBlockSize, 3);
        CHECK(std::equal(blk.begin(), blk.begin() + 1024, want.begin() + 200 * kBlockSize));
        CHECK(all_zero(std::span(blk).subspan(1024, 1024)));
        REQUIRE(flush_sync(*chain));
    }
    auto chain = open_chain({ base, top });
    CHECK(all_zero(read_all(*chain, 16 * kBlockSize, 32 * kBlockSize)));
    CHECK(all_zero(read_all(*chain, 100 * kBlockSize, 8 * kBlockSize)));
    auto want = fill(256 * kBlockSize, 3);
    auto rest = read_all(*chain, 48 * kBlockSize, 8 * kBlockSize);
    CHECK(std::equal(rest.begin(), rest.end(), want.begin() + 48 * kBlockSize));
}

// A reference model: the bytes the disk must hold.
struct Model {
    std::vector<std::byte> bytes = std::vector<std::byte>(kDisk);
    void write(std::uint64_t off, std::span<std::byte const> d) { std::copy(d.begin(), d.end(), bytes.begin() + static_cast<std::ptrdiff_t>(off)); }
    void zero(std::uint64_t off, std::uint64_t len) { std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(off), len, std::byte { 0 }); }
};

static void check_model(Chain& chain, Model const& model)
{
    auto got = read_all(chain, 0, model.bytes.size());
    for (std::size_t i = 0; i < got.size(); i += 512) {
        if (!std::equal(got.begin() + static_cast<std::ptrdiff_t>(i), got.begin() + static_cast<std::ptrdiff_t>(i + 512),
                model.bytes.begin() + static_cast<std::ptrdiff_t>(i))) {
            FAIL("disk differs from the model at sector " << i / 512);
        }
    }
}

// Runs a batch of random non-overlapping requests at once (queue depth > 1).
static void random_batch(Chain& chain, Model& model, std::mt19937& rng, std::uint32_t& seed)
{
    std::vector<std::vector<std::byte>> bufs;
    std::vector<iovec> iovs(16);
    std::vector<BlockRequest> reqs;
    std::map<std::uint64_t, bool> used; // 64 KiB slots already taken in this batch
    for (unsigned i = 0; i < 12; ++i) {
        std::uint64_t slot = rng() % (kDisk / 65536);
        if (used[slot])
            continue;
        used[slot] = true;
        std::uint64_t off = slot * 65536 + (rng() % 64) * 512;
        std::uint64_t len = std::min<std::uint64_t>((1 + rng() % 40) * 512, slot * 65536 + 65536 - off);
        auto kind = static_cast<unsigned>(rng() % 10);
        BlockRequest r { BlockOp::Write, off, len, {}, i };
        if (kind < 7) {
            bufs.push_back(fill(len, ++seed));
            iovs[reqs.size()] = iovec { bufs.back().data(), len };
            r.iov = { &iovs[reqs.size()], 1 };
            model.write(off, bufs.back());
        } else {
            r.op = kind < 9 ? BlockOp::Discard : BlockOp::WriteZeroes;
            model.zero(off, len);
        }
        reqs.push_back(r);
    }
    for (auto const& r : reqs)
        REQUIRE(chain.submit(r));
    REQUIRE(chain.kick());
    std::size_t done = 0;
    while (done < reqs.size())
        done += chain.reap([&](BlockCompletion&& c) { REQUIRE_MESSAGE(c.status, (c.status ? "" : c.status.error().message)); }, true);
}

TEST_CASE("chain: random I/O, snapshots on a live chain, commit, flatten and resize match the model")
{
    TempDir dir;
    std::string base = dir.path("base");
    make_frozen_layer(base, kDisk, kDisk / kBlockSize / 2, 11);
    Model model;
    model.write(0, fill(kDisk / 2, 11));
    std::vector<std::string> paths { base, dir.path("top0") };
    {
        auto e = make_engine(EngineKind::Sync);
        REQUIRE(Layer::create(paths.back(), kDisk, LayerId::random(), *e.value()));
    }
    std::mt19937 rng(42);
    std::uint32_t seed = 1000;
    auto chain = open_chain(paths);
    for (unsigned round = 0; round < 6; ++round) {
        for (unsigned b = 0; b < 8; ++b)
            random_batch(*chain, model, rng, seed);
        REQUIRE(flush_sync(*chain));
        check_model(*chain, model);
        // Snapshot while the chain stays open (as a running VM's would).
        paths.push_back(dir.path("top" + std::to_string(round + 1)));
        REQUIRE(chain->freeze_top_and_push(paths.back(), LayerId::random()));
        check_model(*chain, model);
    }
    CHECK(chain->depth() == 8);
    // Reopening from the files gives the same disk.
    chain.reset();
    chain = open_chain(paths);
    check_model(*chain, model);
    // Commit the top frozen layer into its parent, then another one deeper.
    REQUIRE(chain->commit(chain->depth() - 2));
    paths.erase(paths.end() - 2);
    check_model(*chain, model);
    REQUIRE(chain->commit(2));
    paths.erase(paths.begin() + 2);
    check_model(*chain, model);
    random_batch(*chain, model, rng, seed);
    REQUIRE(flush_sync(*chain));
    chain.reset();
    chain = open_chain(paths);
    check_model(*chain, model);
    // Flatten into one standalone layer.
    std::string flat = dir.path("flat");
    REQUIRE(chain->flatten_to(flat, LayerId::random(), true));
    {
        auto single = open_chain({ flat }, true);
        check_model(*single, model);
        CHECK(single->depth() == 1);
    }
    // Grow: the new space reads as zeros and takes writes.
    REQUIRE(chain->resize(2 * kDisk));
    CHECK(chain->size() == 2 * kDisk);
    CHECK(all_zero(read_all(*chain, kDisk, kDisk)));
    REQUIRE(write_sync(*chain, kDisk + 8192, fill(4096, 5)));
    REQUIRE(flush_sync(*chain));
    chain.reset();
    chain = open_chain(paths);
    CHECK(chain->size() == 2 * kDisk);
    CHECK(read_all(*chain, kDisk + 8192, 4096) == fill(4096, 5));
    // Every layer checks clean.
    for (std::size_t i = 0; i < chain->depth(); ++i) {
        auto r = chain->layer(i).check(RepairMode::None);
        REQUIRE(r);
        CHECK(r.value().corruptions == 0);
    }
}

TEST_CASE("chain: refuses a writable layer below the top, and operations on a busy chain")
{
    TempDir dir;
    std::string a = dir.path("a");
    std::string b = dir.path("b");
    {
        auto e = make_engine(EngineKind::Sync);
        REQUIRE(Layer::create(a, kDisk, LayerId::random(), *e.value()));
    }
    make_frozen_layer(b, kDisk, 1, 1);
    std::string t = dir.path("t");
    {
        auto e = make_engine(EngineKind::Sync);
        REQUIRE(Layer::create(t, kDisk, LayerId::random(), *e.value()));
    }
    auto c = Chain::open({ a, t });
    REQUIRE(!c);
    CHECK(c.error().message.find("not frozen") != std::string::npos);
    auto ro = Chain::open({ b }, ChainOptions { .read_only = true });
    REQUIRE(ro);
    std::vector<std::byte> buf(4096);
    iovec iov { buf.data(), buf.size() };
    REQUIRE(ro.value()->submit(BlockRequest { BlockOp::Read, 0, 4096, { &iov, 1 }, 1 }));
    CHECK(!ro.value()->resize(2 * kDisk));
    REQUIRE(ro.value()->kick());
    ro.value()->reap([](BlockCompletion&&) {}, true);
}
