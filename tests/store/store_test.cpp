// The store end to end: through the library (disks, snapshots, clones, revert,
// commit, flatten, resize, images, GC, names, locks) and through build/strata
// with a temporary STRATA_HOME (interop with qemu-img, archive corruption,
// concurrent manifest writers in two processes).
#include "store/store.h"
#include "imaging/archive/archive_writer.h"
#include "store/layer_transfer.h"
#include "base/fd.h"
#include "imaging/layer/layer_format.h"
#include "tests/support/layer_header.h"
#include "tests/support/shell.h"
#include "tests/support/temp_store.h"

#include <dirent.h>
#include <fstream>
#include <iterator>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace strata;
using strata::test::sh;
using strata::test::sh_out;
using strata::test::TempDir;

namespace {

std::unique_ptr<Store> open_store(TempDir const& dir)
{
    return strata::test::open_store(dir / "home", false);
}

std::set<std::string> layer_files(TempDir const& dir)
{
    std::set<std::string> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir((dir / "home/layers").c_str()), ::closedir);
    REQUIRE(d);
    while (dirent* e = ::readdir(d.get()))
        if (e->d_name[0] != '.')
            out.insert(e->d_name);
    return out;
}

void write_pattern(Store& store, std::string const& disk, std::uint64_t offset, int value)
{
    auto chain = store.open_disk(disk);
    REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    std::vector<std::byte> buf(8192, static_cast<std::byte>(value));
    REQUIRE(write_sync(*chain.value(), offset, buf));
    REQUIRE(flush_sync(*chain.value()));
}

int read_byte(Store& store, std::string const& disk, std::uint64_t offset)
{
    ChainOptions ro;
    ro.read_only = true;
    auto chain = store.open_disk(disk, ro);
    REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    std::vector<std::byte> buf(4096);
    REQUIRE(read_sync(*chain.value(), offset / 4096 * 4096, buf));
    return std::to_integer<int>(buf[offset % 4096]);
}

std::string strata_cmd(TempDir const& dir, std::string const& args)
{
    return "STRATA_HOME='" + (dir / "home") + "' " STRATA_BUILD_DIR "/strata " + args;
}

} // namespace

TEST_CASE("store: snapshot, clone, revert, commit, flatten and resize keep the right data")
{
    TempDir dir;
    auto store = open_store(dir);
    REQUIRE(store->create_disk("d", 64 << 20));
    write_pattern(*store, "d", 0, 0x11);
    auto snap = store->snapshot_disk("d", "s1");
    REQUIRE(snap);
    CHECK(snap.value().layers.size() == 1);
    write_pattern(*store, "d", 0, 0x22);
    CHECK(read_byte(*store, "d", 0) == 0x22);
    // A clone of the snapshot sees the old data and is independent.
    REQUIRE(store->create_disk_from("c", ObjectKind::Snapshot, "s1"));
    CHECK(read_byte(*store, "c", 0) == 0x11);
    write_pattern(*store, "c", 4096 * 4, 0x33);
    CHECK(read_byte(*store, "d", 4096 * 4) == 0);
    // Revert drops the changes made after the snapshot.
    REQUIRE(store->revert_disk("d", "s1"));
    CHECK(read_byte(*store, "d", 0) == 0x11);
    // Commit needs the parent to be used by nobody else.
    write_pattern(*store, "d", 8192, 0x44);
    REQUIRE(store->snapshot_disk("d", "s2"));
    auto refused = store->commit_disk("d");
    REQUIRE(!refused);
    CHECK(refused.error().kind == ErrorKind::Busy);
    REQUIRE(store->remove(ObjectKind::Snapshot, "s2"));
    REQUIRE(store->remove(ObjectKind::Disk, "c"));
    REQUIRE(store->remove(ObjectKind::Snapshot, "s1"));
    auto before = store->get(ObjectKind::Disk, "d");
    REQUIRE(before);
    REQUIRE(before.value().layers.size() == 3);
    auto committed = store->commit_disk("d");
    REQUIRE_MESSAGE(committed, (committed ? "" : committed.error().message));
    CHECK(store->get(ObjectKind::Disk, "d").value().layers.size() == 2);
    CHECK(read_byte(*store, "d", 0) == 0x11);
    CHECK(read_byte(*store, "d", 8192) == 0x44);
    REQUIRE(store->flatten_disk("d"));
    CHECK(store->get(ObjectKind::Disk, "d").value().layers.size() == 1);
    CHECK(read_byte(*store, "d", 8192) == 0x44);
    REQUIRE(store->resize_disk("d", 128 << 20));
    CHECK(store->get(ObjectKind::Disk, "d").value().size == (128u << 20));
    CHECK(!store->resize_disk("d", 1 << 20));
    // Only the disk's one layer is left: GC removed the rest.
    CHECK(layer_files(dir).size() == 1);
}

TEST_CASE("store: garbage collection never deletes a layer in use")
{
    TempDir dir;
    auto store = open_store(dir);
    REQUIRE(store->create_disk("d", 16 << 20));
    write_pattern(*store, "d", 0, 0x5a);
    REQUIRE(store->create_image("img", ObjectKind::Disk, "d"));
    REQUIRE(store->create_disk_from("clone", ObjectKind::Image, "img"));
    REQUIRE(store->snapshot_disk("clone", "snap"));
    auto files = layer_files(dir);
    auto gc = store->gc();
    REQUIRE(gc);
    CHECK(gc.value().removed.empty());
    CHECK(layer_files(dir) == files);
    // Deleting the source disk and the image keeps what the clone and snapshot use.
    REQUIRE(store->remove(ObjectKind::Disk, "d"));
    REQUIRE(store->remove(ObjectKind::Image, "img"));
    CHECK(read_byte(*store, "clone", 0) == 0x5a);
    REQUIRE(store->remove(ObjectKind::Disk, "clone"));
    CHECK(!layer_files(dir).empty()); // the snapshot still holds its layers
    REQUIRE(store->remove(ObjectKind::Snapshot, "snap"));
    CHECK(layer_files(dir).empty());
    // A stray file that is not a layer ID is never touched.
    REQUIRE(sh("touch '" + (dir / "home/layers/notes.txt") + "'") == 0);
    REQUIRE(store->gc());
    CHECK(layer_files(dir).count("notes.txt") == 1);
}

TEST_CASE("store: names are checked and unique per kind, a disk in use is locked")
{
    TempDir dir;
    auto store = open_store(dir);
    for (char const* bad : { "", "a/b", "..", "x..y", ".hidden", "-opt", "tab\there", "\x01" }) {
        CAPTURE(bad);
        auto r = store->create_disk(bad, 1 << 20);
        REQUIRE(!r);
        CHECK(r.error().kind == ErrorKind::Usage);
    }
    CHECK(!store->create_disk(std::string(200, 'a'), 1 << 20));
    REQUIRE(store->create_disk("d", 1 << 20));
    auto dup = store->create_disk("d", 1 << 20);
    REQUIRE(!dup);
    CHECK(dup.error().kind == ErrorKind::Exists);
    REQUIRE(store->snapshot_disk("d", "d")); // another kind may reuse the name
    auto chain = store->open_disk("d");
    REQUIRE(chain);
    auto busy = store->snapshot_disk("d", "s2");
    REQUIRE(!busy);
    CHECK(busy.error().kind == ErrorKind::Busy);
    auto del = store->remove(ObjectKind::Disk, "d");
    REQUIRE(!del);
    CHECK(del.error().kind == ErrorKind::Busy);
    auto missing = store->get(ObjectKind::Image, "nope");
    REQUIRE(!missing);
    CHECK(missing.error().kind == ErrorKind::NotFound);
}

TEST_CASE("store CLI: qemu-img interop, archive round trip and corruption")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 12);
    REQUIRE(sh("qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd '" + raw + "' '" + (dir / "src.qcow2") + "'") == 0);
    REQUIRE(sh(strata_cmd(dir, "images import fromq '" + (dir / "src.qcow2") + "'")) == 0);
    REQUIRE(sh(strata_cmd(dir, "images import fromraw -f raw '" + raw + "'")) == 0);
    REQUIRE(sh(strata_cmd(dir, "images export fromq '" + (dir / "out.qcow2") + "' -O qcow2")) == 0);
    CHECK(sh("qemu-img check '" + (dir / "out.qcow2") + "'") == 0);
    CHECK(sh("qemu-img compare -f raw -F qcow2 '" + raw + "' '" + (dir / "out.qcow2") + "'") == 0);
    REQUIRE(sh(strata_cmd(dir, "images export fromraw '" + (dir / "out.raw") + "' -O raw")) == 0);
    CHECK(sh("cmp '" + raw + "' '" + (dir / "out.raw") + "'") == 0);
    REQUIRE(sh(strata_cmd(dir, "images export fromraw '" + (dir / "out.arc") + "'")) == 0);
    REQUIRE(sh(strata_cmd(dir, "images import back '" + (dir / "out.arc") + "'")) == 0);
    REQUIRE(sh(strata_cmd(dir, "disks create vm --image back")) == 0);
    CHECK(sh(strata_cmd(dir, "images export back '" + (dir / "back.raw") + "' -O raw")) == 0);
    CHECK(sh("cmp '" + raw + "' '" + (dir / "back.raw") + "'") == 0);
    CHECK(sh(strata_cmd(dir, "img compare '" + raw + "' '" + (dir / "out.qcow2") + "'")) == 0);
    REQUIRE(sh("printf 'X' | dd of='" + (dir / "back.raw") + "' bs=1 seek=5000 conv=notrunc") == 0);
    CHECK(sh(strata_cmd(dir, "img compare '" + raw + "' '" + (dir / "back.raw") + "'")) == 1);
    CHECK(sh(strata_cmd(dir, "img compare '" + raw + "' /nonexistent")) == 2);

    // One flipped byte: a clear error (EX_DATAERR) and nothing imported.
    auto before = sh_out("ls '" + (dir / "home/layers") + "' '" + (dir / "home/images") + "' '" + (dir / "home/tmp") + "'");
    REQUIRE(sh("cp '" + (dir / "out.arc") + "' '" + (dir / "bad.arc") + "'") == 0);
    REQUIRE(sh("printf '\\001' | dd of='" + (dir / "bad.arc") + "' bs=1 seek=3000 conv=notrunc") == 0);
    CHECK(sh(strata_cmd(dir, "images import bad '" + (dir / "bad.arc") + "'")) == 65);
    CHECK(sh_out("ls '" + (dir / "home/layers") + "' '" + (dir / "home/images") + "' '" + (dir / "home/tmp") + "'") == before);
    // --json output parses, usage errors are EX_USAGE, missing objects EX_NOINPUT.
    auto json = nlohmann::json::parse(sh_out(strata_cmd(dir, "images list --json")), nullptr, false);
    REQUIRE(json.is_array());
    CHECK(json.size() == 3);
    CHECK(sh(strata_cmd(dir, "disks create x --size 1Q")) == 64);
    CHECK(sh(strata_cmd(dir, "disks describe nope")) == 66);
    CHECK(sh(strata_cmd(dir, "disks create 'a/b' --size 1M")) == 64);
}

TEST_CASE("store: two processes writing manifests at once don't corrupt the store")
{
    TempDir dir;
    open_store(dir);
    std::vector<pid_t> kids;
    for (int p = 0; p < 2; ++p) {
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            auto s = Store::open(dir / "home");
            int bad = s ? 0 : 1;
            for (int i = 0; i < 15 && bad == 0; ++i) {
                std::string name = "p" + std::to_string(p) + "-" + std::to_string(i);
                bad += s.value()->create_disk(name, 1 << 20) ? 0 : 1;
                bad += s.value()->snapshot_disk(name, name + "-s") ? 0 : 1;
                bad += s.value()->create_disk_from(name + "-c", ObjectKind::Snapshot, name + "-s") ? 0 : 1;
                if (i % 2 == 0)
                    bad += s.value()->remove(ObjectKind::Disk, name + "-c") ? 0 : 1;
            }
            ::_exit(bad == 0 ? 0 : 1);
        }
        kids.push_back(pid);
    }
    for (pid_t pid : kids) {
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    auto store = open_store(dir);
    auto disks = store->list(ObjectKind::Disk);
    REQUIRE(disks);
    CHECK(disks.value().size() == 2 * 15 + 2 * 7);
    // Every referenced layer exists, and GC finds nothing to remove.
    for (auto const& d : disks.value())
        for (auto const& id : d.layers)
            CHECK(::access(store->layer_path(id).c_str(), F_OK) == 0);
    auto gc = store->gc();
    REQUIRE(gc);
    CHECK(gc.value().removed.empty());
}

TEST_CASE("store: a layer's archive (and pushed blob) does not depend on where its data sits in the file")
{
    TempDir dir;
    auto engine = make_engine(EngineKind::Sync, 8);
    REQUIRE(engine);
    std::vector<std::byte> data(16 * kBlockSize);
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<std::byte>((i * 2654435761u) >> 13);
    // The same content, written in block order, and blocks 6-11 before 0-5
    // (two data extents whose data is not contiguous in the file).
    auto archive = [&](std::string const& name, std::vector<std::pair<std::uint64_t, std::uint64_t>> const& order) {
        std::string path = dir / (name + ".strata");
        auto layer = Layer::create(path, 16 * kBlockSize, LayerId::random(), *engine.value(), LayerOptions { .cache = CacheMode::Writeback });
        REQUIRE(layer);
        for (auto const& [first, count] : order)
            REQUIRE(layer.value()->write_blocks(first, std::span(data).subspan(first * kBlockSize, count * kBlockSize)));
        REQUIRE(layer.value()->freeze(true));
        LayerInput in = archive_layer_input(*layer.value());
        in.id = layer.value()->digest()->to_string();
        std::string out = dir / (name + ".archive");
        auto w = ArchiveWriter::create(out, ArchiveOptions { 3, 8 * kBlockSize, 1 });
        REQUIRE(w);
        auto added = w.value()->add_disk("layer", { in });
        REQUIRE_MESSAGE(added, (added ? std::string() : added.error().message));
        REQUIRE(w.value()->finish({ { "kind", "layer" } }));
        std::ifstream f(out, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    auto a = archive("a", { { 0, 12 } });
    auto b = archive("b", { { 6, 6 }, { 0, 6 } });
    CHECK(!a.empty());
    CHECK(a == b);
}

TEST_CASE("store: layer_digests uses a digest an older strata recorded only where the layout cannot have changed it")
{
    TempDir dir;
    auto store = open_store(dir);
    REQUIRE(store);
    auto engine = make_engine(EngineKind::Sync, 8);
    REQUIRE(engine);
    std::vector<std::byte> data(8 * kBlockSize, std::byte { 0x5a });
    // One layer written in block order (one data extent), one with blocks 4-7
    // written before 0-3 (two extents, not contiguous in the file), both given
    // the header an older strata wrote (the digest bit alone).
    auto make = [&](std::vector<std::pair<std::uint64_t, std::uint64_t>> const& order) {
        LayerId id = LayerId::random();
        std::string path = store->layer_path(id);
        {
            auto layer = Layer::create(path, 8 * kBlockSize, id, *engine.value());
            REQUIRE(layer);
            for (auto const& [first, count] : order)
                REQUIRE(layer.value()->write_blocks(first, std::span(data).subspan(first * kBlockSize, count * kBlockSize)));
            REQUIRE(layer.value()->freeze(true));
        }
        strata::test::set_header_compat(path, layer_format::kCompatDigest);
        return id;
    };
    LayerId in_order = make({ { 0, 8 } });
    LayerId split = make({ { 4, 4 }, { 0, 4 } });
    auto all = store->layer_digests();
    REQUIRE(all);
    std::set<std::string> found;
    for (auto const& [id, digest] : all.value())
        found.insert(id.to_string());
    CHECK(found.count(in_order.to_string()) == 1);
    CHECK(found.count(split.to_string()) == 0);
}
