// Recovery of disks left by interrupted operations: a top layer frozen by a
// process that died before it recorded the new top (a snapshot killed in
// between), and a live capture's prepared top recorded over a layer the VMM died
// before freezing. Opening the disk finishes either and loses nothing.
#include "imaging/block_backend.h"
#include "imaging/layer/layer.h"
#include "store/store.h"
#include "tests/support/shell.h"

#include <doctest/doctest.h>

#include <cstring>
#include <unistd.h>
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

TEST_CASE("a live capture's two halves: prepare, adopt, cancel, and recovery when the VMM died in between")
{
    test::TempDir dir;
    auto store = Store::open(dir.path()).value();
    REQUIRE(store->create_disk("d", 1 << 20).has_value());
    std::vector<std::byte> data(4096, std::byte { 0x5a });
    auto const before = store->get(ObjectKind::Disk, "d").value().layers;

    SUBCASE("the VMM adopts the prepared top; the snapshot is the old chain")
    {
        auto chain = store->open_disk("d").value();
        REQUIRE(write_sync(*chain, 0, data).has_value());
        auto top = store->prepare_push("d");
        REQUIRE(top.has_value());
        // While the VMM still writes its old top, another writer cannot open the disk.
        CHECK(store->open_disk("d").error().kind == ErrorKind::Busy);
        REQUIRE(flush_sync(*chain).has_value());
        REQUIRE(chain->freeze_top_and_adopt(store->layer_path(top.value())).has_value());
        REQUIRE(store->record_snapshot("s", "d", before).has_value());
        CHECK(store->record_snapshot("s", "d", before).error().kind == ErrorKind::Exists);
        std::vector<std::byte> more(4096, std::byte { 0x11 });
        REQUIRE(write_sync(*chain, 0, more).has_value());
        REQUIRE(flush_sync(*chain).has_value());
        chain.reset();
        auto snap = store->create_disk_from("from-s", ObjectKind::Snapshot, "s");
        REQUIRE(snap.has_value());
        auto from = store->open_disk("from-s").value();
        std::vector<std::byte> back(4096);
        REQUIRE(read_sync(*from, 0, back).has_value());
        CHECK(std::memcmp(back.data(), data.data(), data.size()) == 0);
        auto now = store->open_disk("d").value();
        REQUIRE(read_sync(*now, 0, back).has_value());
        CHECK(std::memcmp(back.data(), more.data(), more.size()) == 0);
        CHECK(store->get(ObjectKind::Disk, "d").value().layers.size() == before.size() + 1);
    }
    SUBCASE("cancel_push takes the prepared top back out")
    {
        auto top = store->prepare_push("d").value();
        REQUIRE(store->cancel_push("d", top).has_value());
        CHECK(store->get(ObjectKind::Disk, "d").value().layers == before);
        CHECK(::access(store->layer_path(top).c_str(), F_OK) != 0);
        CHECK_FALSE(store->cancel_push("d", top).has_value());
    }
    SUBCASE("a VMM killed after prepare_push: open_disk freezes the old top, keeping its writes")
    {
        {
            auto chain = store->open_disk("d").value();
            REQUIRE(store->prepare_push("d").has_value());
            REQUIRE(write_sync(*chain, 4096, data).has_value());
            REQUIRE(flush_sync(*chain).has_value());
        } // the VMM is gone without freezing
        auto chain = store->open_disk("d");
        REQUIRE_MESSAGE(chain.has_value(), (chain ? "" : chain.error().message));
        std::vector<std::byte> back(4096);
        REQUIRE(read_sync(*chain.value(), 4096, back).has_value());
        CHECK(std::memcmp(back.data(), data.data(), data.size()) == 0);
        auto const layers = store->get(ObjectKind::Disk, "d").value().layers;
        REQUIRE(layers.size() == before.size() + 1);
        auto engine = make_engine(EngineKind::Sync, 8).value();
        chain.value().reset();
        CHECK(Layer::open(store->layer_path(layers[layers.size() - 2]), LayerOpen::ReadOnly, *engine).value()->frozen());
    }
    SUBCASE("a writable layer under a top that holds data is reported, not frozen")
    {
        auto top = store->prepare_push("d").value();
        {
            auto engine = make_engine(EngineKind::Sync, 8).value();
            auto layer = Layer::open(store->layer_path(top), LayerOpen::Writable, *engine).value();
            REQUIRE(layer->write_blocks(0, data).has_value());
            REQUIRE(layer->flush().has_value());
        }
        auto chain = store->open_disk("d");
        REQUIRE_FALSE(chain.has_value());
        CHECK(chain.error().message.find("needs repair") != std::string::npos);
    }
    SUBCASE("freeze_top_and_adopt refuses a layer that is not an empty top of the disk's size")
    {
        auto chain = store->open_disk("d").value();
        auto top = store->prepare_push("d").value();
        {
            auto engine = make_engine(EngineKind::Sync, 8).value();
            auto layer = Layer::open(store->layer_path(top), LayerOpen::Writable, *engine).value();
            REQUIRE(layer->write_blocks(0, data).has_value());
            REQUIRE(layer->flush().has_value());
        }
        auto adopted = chain->freeze_top_and_adopt(store->layer_path(top));
        REQUIRE_FALSE(adopted.has_value());
        CHECK(adopted.error().kind == ErrorKind::BadInput);
        // The chain is unchanged and still writable.
        CHECK(write_sync(*chain, 0, data).has_value());
    }
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
