// Recovery of a disk whose top layer was frozen by a process that died before it
// recorded the new top (a snapshot or a live capture killed in between): opening
// the disk pushes a fresh top and loses nothing.
#include "imaging/block_backend.h"
#include "imaging/layer.h"
#include "imaging/store.h"
#include "tests/imaging/store_test_util.h"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using namespace strata;

TEST_CASE("a disk left with a frozen top opens writable, with its data")
{
    test::TempDir dir;
    auto store = Store::open(dir.path()).value();
    REQUIRE(store->create_disk("d", 1 << 20).has_value());
    std::vector<std::byte> data(4096, std::byte { 0x5a });
    {
        auto chain = store->open_disk("d").value();
        REQUIRE(write_sync(*chain, 8192, data).has_value());
        REQUIRE(flush_sync(*chain).has_value());
    }
    // Freeze the top the way an interrupted capture leaves it.
    auto manifest = store->get(ObjectKind::Disk, "d").value();
    {
        auto engine = make_engine(EngineKind::Sync, 8).value();
        auto top = Layer::open(store->layer_path(manifest.layers.back()), LayerOpen::Writable, *engine).value();
        REQUIRE(top->freeze(false).has_value());
    }
    auto chain = store->open_disk("d");
    REQUIRE(chain.has_value());
    std::vector<std::byte> back(4096);
    REQUIRE(read_sync(*chain.value(), 8192, back).has_value());
    CHECK(std::memcmp(back.data(), data.data(), data.size()) == 0);
    std::vector<std::byte> more(4096, std::byte { 0x11 });
    CHECK(write_sync(*chain.value(), 0, more).has_value());
    CHECK(store->get(ObjectKind::Disk, "d").value().layers.size() == manifest.layers.size() + 1);
}

TEST_CASE("an archive of a multi-layer image imports zero blocks of upper layers as zeros")
{
    test::TempDir dir;
    auto store = Store::open(dir / "store").value();
    REQUIRE(store->create_disk("d", 1 << 20).has_value());
    std::vector<std::byte> data(4096, std::byte { 0x77 }), zeros(4096);
    {
        auto chain = store->open_disk("d").value();
        REQUIRE(write_sync(*chain, 0, data).has_value());
        REQUIRE(flush_sync(*chain).has_value());
    }
    REQUIRE(store->snapshot_disk("d", "s").has_value());
    {
        // Written zeros (not a discard) next to data, so the archive carries the
        // zero block inside a data chunk of the upper layer.
        auto chain = store->open_disk("d").value();
        std::vector<std::byte> mixed(8192, std::byte { 0x33 });
        std::memset(mixed.data(), 0, 4096);
        REQUIRE(write_sync(*chain, 0, mixed).has_value());
        REQUIRE(flush_sync(*chain).has_value());
    }
    REQUIRE(store->create_image("img", ObjectKind::Disk, "d").has_value());
    REQUIRE(store->export_image("img", dir / "img.strata").has_value());
    auto other = Store::open(dir / "other").value();
    REQUIRE(other->import_image("back", dir / "img.strata").has_value());
    REQUIRE(other->create_disk_from("check", ObjectKind::Image, "back").has_value());
    auto chain = other->open_disk("check", ChainOptions { .read_only = true }).value();
    std::vector<std::byte> back(4096, std::byte { 1 });
    REQUIRE(read_sync(*chain, 0, back).has_value());
    CHECK(std::memcmp(back.data(), zeros.data(), zeros.size()) == 0);
}
