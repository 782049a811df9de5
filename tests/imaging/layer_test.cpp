// Unit tests for the layer format pieces (CRC32C, extent map, header codec) and
// for Layer on real files: create/open, mapping, allocation, flush, freeze,
// resize, locks, check.
#include "imaging/layer/crc32c.h"
#include "imaging/layer/extent_map.h"
#include "imaging/layer/layer.h"
#include "imaging/layer/layer_format.h"
#include "base/fd.h"
#include "tests/imaging/layer_test_util.h"
#include "tests/support/layer_header.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace strata;
using namespace strata::test;

TEST_CASE("crc32c: known value, and hardware and software agree")
{
    std::string s = "123456789";
    auto bytes = std::as_bytes(std::span(s.data(), s.size()));
    CHECK(crc32c(bytes) == 0xE3069283u);
    CHECK(crc32c_software(bytes) == 0xE3069283u);
    auto big = fill(10007, 3);
    CHECK(crc32c(big) == crc32c_software(big));
    // Extending in pieces equals one pass.
    CHECK(crc32c(std::span(big).subspan(100), crc32c(std::span(big).subspan(0, 100))) == crc32c(big));
}

TEST_CASE("extent map: assign splits, merges and looks up runs")
{
    ExtentMap m;
    m.assign(10, 10, mapval::data(0x10000));
    auto l = m.lookup(15);
    CHECK(l.value == mapval::data(0x10000 + 5 * 4096));
    CHECK(l.run == 5);
    CHECK(m.lookup(5).value == 0);
    CHECK(m.lookup(5).run == 5);
    CHECK(m.lookup(20).run == UINT64_MAX);
    // Contiguous data merges into one extent.
    m.assign(20, 2, mapval::data(0x10000 + 10 * 4096));
    CHECK(m.extent_count() == 1);
    // Overwrite the middle with zeros: three extents.
    m.assign(12, 3, mapval::kZero);
    CHECK(m.extent_count() == 3);
    CHECK(m.lookup(13).value == mapval::kZero);
    CHECK(m.lookup(15).value == mapval::data(0x10000 + 5 * 4096));
    // Unmap across boundaries.
    m.erase(11, 5);
    CHECK(m.lookup(11).value == 0);
    CHECK(m.lookup(16).value == mapval::data(0x10000 + 6 * 4096));
    CHECK(m.lookup(10).value == mapval::data(0x10000));
    // A hostile huge extent is one node.
    m.assign(0, 1ull << 44, mapval::kZero);
    CHECK(m.extent_count() == 1);
}

TEST_CASE("layer header: encode/decode round trip, CRC and bounds are checked")
{
    LayerHeader h;
    h.generation = 7;
    h.virtual_size = 1 << 30;
    h.id = LayerId::random();
    h.data_start = layer_format::kJournalOffset + h.journal_length;
    std::array<std::byte, 4096> slot {};
    encode_header(h, slot);
    auto d = decode_header(slot, 1 << 30);
    REQUIRE(d);
    CHECK(d.value().id == h.id);
    CHECK(d.value().virtual_size == h.virtual_size);
    slot[50] ^= std::byte { 1 };
    CHECK(!decode_header(slot, 1 << 30));
    auto parsed = LayerId::parse(h.id.to_string());
    REQUIRE(parsed);
    CHECK(parsed.value() == h.id);
    CHECK(!LayerId::parse("xyz"));
}

TEST_CASE("layer: create, write blocks, flush, reopen, mapping and allocation")
{
    TempDir dir;
    std::string path = dir.path("a.strata");
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto id = LayerId::random();
    {
        auto layer = Layer::create(path, 64 << 20, id, *engine.value());
        REQUIRE(layer);
        auto& l = *layer.value();
        CHECK(l.size() == (64u << 20));
        CHECK(l.map().empty());
        auto d1 = fill(3 * 4096, 1);
        REQUIRE(l.write_blocks(100, d1));
        std::uint64_t end_after_first = l.data_end();
        // An overwrite of owned blocks goes in place: no new allocation.
        REQUIRE(l.write_blocks(101, fill(4096, 2)));
        CHECK(l.data_end() == end_after_first);
        l.set_zero(200, 50);
        REQUIRE(l.flush());
        CHECK(!l.has_uncommitted());
        // Creating over an existing file is refused.
        CHECK(!Layer::create(path, 1 << 20, id, *engine.value()));
    }
    auto layer = Layer::open(path, LayerOpen::ReadOnly, *engine.value());
    REQUIRE(layer);
    auto& l = *layer.value();
    CHECK(l.id() == id);
    CHECK(mapval::kind(l.map().lookup(100).value) == MapKind::Data);
    CHECK(l.map().lookup(100).run == 3);
    CHECK(mapval::kind(l.map().lookup(220).value) == MapKind::Zero);
    CHECK(mapval::kind(l.map().lookup(99).value) == MapKind::Unmapped);
    auto report = l.check(RepairMode::None);
    REQUIRE(report);
    CHECK(report.value().corruptions == 0);
    CHECK(report.value().leaks == 0);
    CHECK(report.value().allocated_blocks == 3);
}

TEST_CASE("layer: many flushes fill the journal and roll over into checkpoints")
{
    TempDir dir;
    std::string path = dir.path("j.strata");
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    {
        auto layer = Layer::create(path, 64 << 20, LayerId::random(), *engine.value(), LayerOptions { .journal_length = 16384 });
        REQUIRE(layer);
        for (std::uint32_t i = 0; i < 40; ++i) {
            REQUIRE(layer.value()->write_blocks(i * 7, fill(4096, i)));
            REQUIRE(layer.value()->flush());
        }
        CHECK(layer.value()->header().checkpoint_length > 0);
    }
    auto layer = Layer::open(path, LayerOpen::Writable, *engine.value());
    REQUIRE(layer);
    auto& l = *layer.value();
    for (std::uint32_t i = 0; i < 40; ++i) {
        auto v = l.map().lookup(i * 7).value;
        REQUIRE(mapval::kind(v) == MapKind::Data);
        AlignedBuffer back(4096);
        REQUIRE(pread_all(l.fd(), back.span(), mapval::offset(v)));
        auto want = fill(4096, i);
        CHECK(std::memcmp(back.data(), want.data(), 4096) == 0);
    }
    auto report = l.check(RepairMode::None);
    REQUIRE(report);
    CHECK(report.value().corruptions == 0);
    CHECK(report.value().leaks == 0);
}

namespace {

// A frozen layer of 16 blocks holding pattern data in blocks 0-7 and 12-13 and
// zeros in 8-9, its data written in the order of the block ranges given (so
// its data extents sit in the file in that order).
void make_layout(std::string const& path, std::vector<std::pair<std::uint64_t, std::uint64_t>> const& order)
{
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto layer = Layer::create(path, 16 * kBlockSize, LayerId::random(), *engine.value());
    REQUIRE(layer);
    auto data = fill(16 * kBlockSize, 7);
    for (auto const& [first, count] : order)
        REQUIRE(layer.value()->write_blocks(first, std::span(data).subspan(first * kBlockSize, count * kBlockSize)));
    layer.value()->set_zero(8, 2);
    REQUIRE(layer.value()->freeze(true));
}

} // namespace

TEST_CASE("layer: the content digest does not depend on where the data sits in the file")
{
    TempDir dir;
    std::string a = dir.path("a.strata"), b = dir.path("b.strata"), c = dir.path("c.strata");
    // In block order: one data extent for blocks 0-7 in the file.
    make_layout(a, { { 0, 8 }, { 12, 2 } });
    // The same content, blocks 4-7 written first: blocks 0-3 and 4-7 are two
    // extents whose data is not contiguous in the file.
    make_layout(b, { { 12, 2 }, { 4, 4 }, { 0, 4 } });
    // Block by block, backwards.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> backwards;
    for (std::uint64_t i = 14; i-- > 0;)
        if (i < 8 || i >= 12)
            backwards.emplace_back(i, 1);
    make_layout(c, backwards);
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto la = Layer::open(a, LayerOpen::ReadOnly, *engine.value());
    auto lb = Layer::open(b, LayerOpen::ReadOnly, *engine.value());
    auto lc = Layer::open(c, LayerOpen::ReadOnly, *engine.value());
    REQUIRE(la);
    REQUIRE(lb);
    REQUIRE(lc);
    CHECK(la.value()->map().extent_count() < lb.value()->map().extent_count());
    REQUIRE(la.value()->digest());
    REQUIRE(lb.value()->digest());
    REQUIRE(lc.value()->digest());
    CHECK(*la.value()->digest() == *lb.value()->digest());
    CHECK(*la.value()->digest() == *lc.value()->digest());
    CHECK(la.value()->compute_digest().value() == lb.value()->compute_digest().value());
    // A different content still differs.
    std::string d = dir.path("d.strata");
    make_frozen_layer(d, 16 * kBlockSize, 8, 7);
    auto ld = Layer::open(d, LayerOpen::ReadOnly, *engine.value());
    REQUIRE(ld);
    CHECK(*ld.value()->digest() != *la.value()->digest());
    la.value().reset();
    lb.value().reset();

    // A digest an older strata recorded (the digest bit alone) was computed
    // extent by extent of the file's layout: kept where that is the same as the
    // content's (no two data extents follow each other in block order),
    // ignored where it is not.
    set_header_compat(a, layer_format::kCompatDigest);
    set_header_compat(b, layer_format::kCompatDigest);
    auto oa = Layer::open(a, LayerOpen::ReadOnly, *engine.value());
    auto ob = Layer::open(b, LayerOpen::ReadOnly, *engine.value());
    REQUIRE(oa);
    REQUIRE(ob);
    CHECK(oa.value()->digest());
    CHECK(!ob.value()->digest());
}

TEST_CASE("layer: freeze records a digest and refuses writers, resize grows only")
{
    TempDir dir;
    std::string a = dir.path("a.strata");
    std::string b = dir.path("b.strata");
    make_frozen_layer(a, 8 << 20, 10, 5);
    make_frozen_layer(b, 8 << 20, 10, 5);
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto la = Layer::open(a, LayerOpen::ReadOnly, *engine.value());
    auto lb = Layer::open(b, LayerOpen::ReadOnly, *engine.value());
    REQUIRE(la);
    REQUIRE(lb);
    REQUIRE(la.value()->digest());
    // Same content, different files and IDs: same digest.
    CHECK(*la.value()->digest() == *lb.value()->digest());
    CHECK(la.value()->id() != lb.value()->id());
    auto w = Layer::open(a, LayerOpen::Writable, *engine.value());
    REQUIRE(!w);
    CHECK(w.error().kind == ErrorKind::Permission);

    std::string c = dir.path("c.strata");
    auto lc = Layer::create(c, 8 << 20, LayerId::random(), *engine.value());
    REQUIRE(lc);
    CHECK(!lc.value()->resize(4 << 20));
    REQUIRE(lc.value()->resize(16 << 20));
    lc.value().reset();
    auto reopened = Layer::open(c, LayerOpen::ReadOnly, *engine.value());
    REQUIRE(reopened);
    CHECK(reopened.value()->size() == (16u << 20));
}

TEST_CASE("layer: a writable layer is locked against a second writer, and the error says so")
{
    TempDir dir;
    std::string path = dir.path("l.strata");
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto first = Layer::create(path, 1 << 20, LayerId::random(), *engine.value());
    REQUIRE(first);
    auto second = Layer::open(path, LayerOpen::Writable, *engine.value());
    REQUIRE(!second);
    CHECK(second.error().kind == ErrorKind::Busy);
    CHECK(second.error().message.find("in use") != std::string::npos);
    // The same in another process (OFD locks are per open file, across processes).
    pid_t pid = ::fork();
    if (pid == 0) {
        auto e = make_engine(EngineKind::Sync);
        auto l = Layer::open(path, LayerOpen::Writable, *e.value());
        ::_exit(!l && l.error().kind == ErrorKind::Busy ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    first.value().reset();
    CHECK(Layer::open(path, LayerOpen::Writable, *engine.value()));
}

TEST_CASE("layer: closing a layer releases its lock even while its open file description lives on")
{
    // The io_uring engine's registered-file table references the layer's open
    // file description, and the kernel may drop that reference only after the
    // process has exited; a lock left to close() would live as long. A dup of
    // the descriptor stands in for that reference here.
    TempDir dir;
    std::string path = dir.path("l.strata");
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto first = Layer::create(path, 1 << 20, LayerId::random(), *engine.value());
    REQUIRE(first);
    Fd lingering(::dup(first.value()->fd()));
    REQUIRE(lingering.valid());
    first.value().reset();
    auto again = Layer::open(path, LayerOpen::Writable, *engine.value());
    REQUIRE_MESSAGE(again, (again ? std::string() : again.error().message));
    // And the new open's own lock holds against a third writer.
    auto third = Layer::open(path, LayerOpen::Writable, *engine.value());
    REQUIRE(!third);
    CHECK(third.error().kind == ErrorKind::Busy);
}
