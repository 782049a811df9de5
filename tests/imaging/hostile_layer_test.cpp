// Corrupted, truncated and hostile layer files: each gets a clear Error (or a
// check report), never a crash or an unbounded allocation; check -r all repairs
// what can be repaired.
#include "imaging/layer/crc32c.h"
#include "tests/imaging/layer_test_util.h"
#include "tests/support/shell.h"

#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

using namespace strata;
using namespace strata::test;

namespace {

std::uint64_t make_layer(std::string const& path, std::uint64_t blocks)
{
    auto e = make_engine(EngineKind::Sync);
    auto l = Layer::create(path, 4 << 20, LayerId::random(), *e.value(), LayerOptions { .cache = CacheMode::Writeback });
    REQUIRE(l);
    if (blocks)
        REQUIRE(l.value()->write_blocks(0, fill(blocks * kBlockSize, 1)));
    return l.value()->header().data_start;
}

void poke(std::string const& path, std::uint64_t offset, std::span<std::byte const> bytes)
{
    Fd fd(::open(path.c_str(), O_RDWR));
    REQUIRE(fd.valid());
    REQUIRE(pwrite_all(fd.get(), bytes, offset));
}

// Writes a valid (CRC-correct) journal record with the given entries as the
// first record of a fresh layer's journal.
void write_record(std::string const& path, std::vector<Extent> const& entries)
{
    std::vector<std::byte> rec(record_length(entries.size()));
    encode_record(1, 0, entries, rec);
    poke(path, layer_format::kJournalOffset, rec);
}

// The header in slot 0 as the layer wrote it, so that a hostile header differs
// from a valid one in exactly the field a case is about.
LayerHeader header_of(std::string const& path)
{
    std::array<std::byte, layer_format::kSlotSize> slot {};
    Fd fd(::open(path.c_str(), O_RDONLY));
    REQUIRE(fd.valid());
    REQUIRE(pread_all(fd.get(), slot, 0));
    auto h = decode_header(slot, std::filesystem::file_size(path));
    REQUIRE(h);
    return h.value();
}

Result<std::unique_ptr<Layer>> open_strict(std::string const& path, IoEngine& e)
{
    return Layer::open(path, LayerOpen::ReadOnly, e, LayerOptions { .cache = CacheMode::Writeback });
}

} // namespace

TEST_CASE("hostile layers: truncated files and bad header CRCs are clear errors")
{
    TempDir dir;
    auto e = make_engine(EngineKind::Sync);
    std::string p = dir.path("t");
    make_layer(p, 0);
    REQUIRE(::truncate(p.c_str(), 100) == 0);
    auto r = open_strict(p, *e.value());
    REQUIRE(!r);
    CHECK(r.error().kind == ErrorKind::BadInput);
    INFO(r.error().message);
    CHECK(r.error().message.find("too short") != std::string::npos);

    // Only the stored CRC is wrong: every field it covers is valid.
    std::string q = dir.path("crc");
    make_layer(q, 0);
    std::byte junk[4] { std::byte { 1 }, std::byte { 2 }, std::byte { 3 }, std::byte { 4 } };
    poke(q, 252, junk);
    r = open_strict(q, *e.value());
    REQUIRE(!r);
    CHECK(r.error().kind == ErrorKind::BadInput);
    CHECK(r.error().message.find("CRC mismatch") != std::string::npos);
}

TEST_CASE("hostile layers: huge sizes and out-of-range checkpoints are refused before allocating")
{
    TempDir dir;
    auto e = make_engine(EngineKind::Sync);
    std::string p = dir.path("h");
    make_layer(p, 0);
    // Each hostile header is the layer's own with one field changed (and a
    // correct CRC), so that exactly one check can refuse it.
    LayerHeader const valid = header_of(p);
    LayerHeader h = valid;
    h.generation = valid.generation + 5;
    h.virtual_size = 1ull << 62;
    std::array<std::byte, 4096> slot {};
    encode_header(h, slot);
    // An invalid newer slot is ignored: the valid older header wins.
    poke(p, 4096, slot);
    auto r = open_strict(p, *e.value());
    REQUIRE(r);
    CHECK(r.value()->size() == (4u << 20));
    r.value().reset();
    // Both slots hostile: a clear error.
    poke(p, 0, slot);
    r = open_strict(p, *e.value());
    REQUIRE(!r);
    CHECK(r.error().message.find("virtual size") != std::string::npos);
    // A checkpoint claimed far past the end of the file.
    h = valid;
    h.checkpoint_offset = 16 << 20;
    h.checkpoint_length = 1ull << 31;
    encode_header(h, slot);
    poke(p, 0, slot);
    poke(p, 4096, slot);
    r = open_strict(p, *e.value());
    REQUIRE(!r);
    CHECK(r.error().message.find("checkpoint lies outside the file") != std::string::npos);
}

TEST_CASE("hostile layers: entries past EOF, outside the disk, or sharing space are errors, check reports, -r all repairs")
{
    TempDir dir;
    auto e = make_engine(EngineKind::Sync);
    std::string p = dir.path("m");
    std::uint64_t data_start = make_layer(p, 0);
    // Each record is valid (CRC, sequence, length) and breaks one rule, named here.
    std::string expected;
    SUBCASE("data past the end of the file")
    {
        write_record(p, { Extent { 3, 2, mapval::data(1ull << 40) } });
        expected = "outside the data area";
    }
    SUBCASE("blocks outside the virtual size")
    {
        write_record(p, { Extent { (4 << 20) / kBlockSize - 1, 5, mapval::kZero } });
        expected = "lies outside the virtual size";
    }
    SUBCASE("two mappings sharing file space (a loop of blocks onto one place)")
    {
        std::vector<std::byte> blk(3 * kBlockSize, std::byte { 7 }); // both mappings inside the file
        poke(p, data_start, blk);
        write_record(p, { Extent { 0, 2, mapval::data(data_start) }, Extent { 10, 2, mapval::data(data_start + kBlockSize) } });
        expected = "share file space";
    }
    SUBCASE("a value with unknown bits")
    {
        // A zero entry (a valid kind) with bits set that no kind uses.
        write_record(p, { Extent { 0, 1, mapval::kZero | 0xff0 } });
        expected = "has an invalid value";
    }
    auto r = open_strict(p, *e.value());
    REQUIRE(!r);
    CHECK(r.error().kind == ErrorKind::BadInput);
    INFO(r.error().message);
    CHECK(r.error().message.find(expected) != std::string::npos);
    {
        auto t = Layer::open(p, LayerOpen::ReadOnly, *e.value(), LayerOptions { .cache = CacheMode::Writeback, .tolerant = true });
        REQUIRE(t);
        auto rep = t.value()->check(RepairMode::None);
        REQUIRE(rep);
        CHECK(rep.value().corruptions > 0);
    }
    {
        auto t = Layer::open(p, LayerOpen::Rewrite, *e.value(), LayerOptions { .cache = CacheMode::Writeback, .tolerant = true });
        REQUIRE(t);
        auto rep = t.value()->check(RepairMode::All);
        REQUIRE(rep);
        CHECK(rep.value().corruptions_fixed == rep.value().corruptions);
    }
    auto fixed = open_strict(p, *e.value());
    REQUIRE_MESSAGE(fixed, (fixed ? std::string() : fixed.error().message));
    auto rep = fixed.value()->check(RepairMode::None);
    REQUIRE(rep);
    CHECK(rep.value().corruptions == 0);
}

TEST_CASE("hostile layers: a checkpoint claiming more entries than it holds is unreadable, not an allocation")
{
    TempDir dir;
    auto e = make_engine(EngineKind::Sync);
    std::string p = dir.path("c");
    make_layer(p, 4);
    {
        auto l = Layer::open(p, LayerOpen::Writable, *e.value(), LayerOptions { .cache = CacheMode::Writeback });
        REQUIRE(l);
        REQUIRE(l.value()->freeze(false)); // writes a checkpoint
    }
    auto l = open_strict(p, *e.value());
    REQUIRE(l);
    std::uint64_t at = l.value()->header().checkpoint_offset;
    std::uint64_t length = l.value()->header().checkpoint_length;
    l.value().reset();
    // Only the entry count is wrong: the checkpoint's CRC is recomputed over the
    // changed bytes, so a reader that trusted the count would go on to allocate.
    std::vector<std::byte> ckpt(length);
    {
        Fd fd(::open(p.c_str(), O_RDONLY));
        REQUIRE(fd.valid());
        REQUIRE(pread_all(fd.get(), ckpt, at));
    }
    std::uint64_t huge = 1ull << 60;
    std::memcpy(ckpt.data() + 16, &huge, 8);
    std::fill(ckpt.begin() + 60, ckpt.begin() + 64, std::byte { 0 });
    std::uint32_t crc = crc32c(ckpt);
    std::memcpy(ckpt.data() + 60, &crc, 4);
    poke(p, at, ckpt);
    auto r = open_strict(p, *e.value());
    REQUIRE(!r);
    INFO(r.error().message);
    CHECK(r.error().message.find("entry count") != std::string::npos);
}

TEST_CASE("hostile layers: random byte flips never crash the opener")
{
    TempDir dir;
    auto e = make_engine(EngineKind::Sync);
    std::string p = dir.path("f");
    make_layer(p, 8);
    {
        auto l = Layer::open(p, LayerOpen::Writable, *e.value(), LayerOptions { .cache = CacheMode::Writeback });
        REQUIRE(l);
        l.value()->set_zero(20, 4);
        REQUIRE(l.value()->flush());
    }
    std::mt19937 rng(5);
    std::string q = dir.path("g");
    // Copy once; each round restores the metadata area and flips bytes in it.
    std::filesystem::copy_file(p, q, std::filesystem::copy_options::overwrite_existing);
    std::vector<std::byte> meta(16 * 1024);
    {
        Fd fd(::open(p.c_str(), O_RDONLY));
        REQUIRE(pread_all(fd.get(), meta, 0));
    }
    for (unsigned i = 0; i < 300; ++i) {
        poke(q, 0, meta);
        for (unsigned k = 0; k < 1 + i % 4; ++k) {
            std::uint64_t off = rng() % (12 * 1024);
            std::byte b { static_cast<unsigned char>(rng()) };
            poke(q, off, { &b, 1 });
        }
        auto r = Layer::open(q, LayerOpen::ReadOnly, *e.value(), LayerOptions { .cache = CacheMode::Writeback });
        if (r)
            CHECK(r.value()->check(RepairMode::None));
        auto t = Layer::open(q, LayerOpen::ReadOnly, *e.value(), LayerOptions { .cache = CacheMode::Writeback, .tolerant = true });
        if (t)
            CHECK(t.value()->check(RepairMode::None));
    }
}

TEST_CASE("hostile layers: a layer cut to its first 4 KiB is refused, not read as an empty disk")
{
    TempDir dir;
    auto e = make_engine(EngineKind::Sync);
    std::string p = dir.path("cut");
    make_layer(p, 8); // 8 blocks of data, then a clean close
    REQUIRE(open_strict(p, *e.value()));
    REQUIRE(::truncate(p.c_str(), 4096) == 0); // the header slot survives, the rest is gone
    auto r = open_strict(p, *e.value());
    REQUIRE(!r);
    CHECK(r.error().kind == ErrorKind::BadInput);
    INFO(r.error().message);
    CHECK(r.error().message.find("truncated") != std::string::npos);
    auto t = Layer::open(p, LayerOpen::ReadOnly, *e.value(), LayerOptions { .cache = CacheMode::Writeback, .tolerant = true });
    CHECK(!t); // nothing to check against: the header itself says the file was longer
    // What a user runs: check says it is corrupt and convert writes nothing.
    std::string const strata = STRATA_BUILD_DIR "/strata";
    CHECK(sh(strata + " img check '" + p + "' >/dev/null 2>&1") != 0);
    std::string out = dir.path("out.raw");
    CHECK(sh(strata + " img convert -O raw '" + p + "' '" + out + "' >/dev/null 2>&1") != 0);
    CHECK_FALSE(std::filesystem::exists(out));
}
