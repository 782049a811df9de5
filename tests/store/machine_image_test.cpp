// VM, instance-template and machine-image records in a real store directory:
// the parsers against hostile text, names, boot artifacts by digest, garbage
// collection with machine images, differential sharing between successive images,
// O(1) VMs from an image, atomicity when a capture is cut short, and the archive
// round trip into a second store (with a corrupted copy that imports nothing).
#include "store/artifacts.h"
#include "imaging/layer/layer.h"
#include "store/machine_image_store.h"
#include "store/store.h"
#include "store/template_record.h"
#include "tests/imaging/store_test_util.h"

#include <algorithm>
#include <chrono>
#include <dirent.h>
#include <fstream>
#include <set>
#include <csignal>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace strata;
using strata::test::TempDir;

namespace {

std::unique_ptr<Store> open_store(std::string const& root)
{
    auto s = Store::open(root);
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
    REQUIRE(ensure_record_dirs(root));
    return std::move(s.value());
}

std::set<std::string> files_in(std::string const& dir)
{
    std::set<std::string> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    REQUIRE(d);
    while (dirent* e = ::readdir(d.get()))
        if (e->d_name[0] != '.')
            out.insert(e->d_name);
    return out;
}

void write_block(Store& store, std::string const& disk, std::uint64_t offset, char value)
{
    auto chain = store.open_disk(disk, ChainOptions { CacheMode::Writeback, EngineKind::Sync, 8, false });
    REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    std::vector<std::byte> buf(4096, std::byte(value));
    REQUIRE(write_sync(*chain.value(), offset, buf));
    REQUIRE(flush_sync(*chain.value()));
}

char read_block(Store& store, std::string const& disk, std::uint64_t offset)
{
    auto chain = store.open_disk(disk, ChainOptions { CacheMode::Writeback, EngineKind::Sync, 8, true });
    REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    std::vector<std::byte> buf(4096);
    REQUIRE(read_sync(*chain.value(), offset, buf));
    bool uniform = std::all_of(buf.begin(), buf.end(), [&](std::byte b) { return b == buf[0]; });
    REQUIRE(uniform);
    return static_cast<char>(buf[0]);
}

std::string make_file(TempDir const& dir, std::string const& name, std::string const& content)
{
    std::ofstream(dir / name) << content;
    return dir / name;
}

// A stopped VM "vm" with a 1 MiB data disk and a scratch disk, booting `firmware`.
VmRecord make_vm(Store& store, TempDir const& dir, std::string const& name = "vm")
{
    REQUIRE(store.create_disk(name + "-data", 1 << 20));
    REQUIRE(store.create_disk(name + "-tmp", 1 << 20));
    auto held = RecordLock::take(store.root(), true);
    REQUIRE(held);
    auto digest = put_artifact(held.value(), make_file(dir, "fw.elf", "pretend firmware"));
    REQUIRE(digest);
    VmRecord vm;
    vm.name = name;
    vm.spec.boot.firmware = digest.value();
    vm.spec.boot.cmdline = "round=1";
    vm.disks = { VmDisk { "data", name + "-data", false, true, false, "none", true },
        VmDisk { "tmp", name + "-tmp", false, false, true, "unsafe", true } };
    vm.labels = { { "team", "blue" } };
    vm.metadata = { { "startup", "echo hi" } };
    REQUIRE(save_vm(held.value(), vm, true));
    return vm;
}

MachineImageRecord capture(Store& store, VmRecord const& vm, std::string const& name)
{
    MachineImageRecord m;
    m.name = name;
    m.description = "test image";
    m.labels = { { "env", "ci" } };
    auto r = capture_stopped_vm(store, vm, m);
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    return r.value();
}

} // namespace

TEST_CASE("records parse what they encode and refuse hostile text")
{
    VmRecord vm;
    vm.name = "web-1";
    vm.spec.boot.kernel = std::string(64, 'a');
    vm.spec.boot.initrd = std::string(64, 'b');
    vm.spec.vcpus = 4;
    vm.disks = { VmDisk { "boot", "web-1-disk-boot", false, true, false, "none", true } };
    vm.labels = { { "a", "b" } };
    auto back = parse_vm(encode_vm(vm));
    REQUIRE_MESSAGE(back, (back ? "" : back.error().message));
    CHECK(encode_vm(back.value()) == encode_vm(vm));

    auto mutated = [&](auto&& edit) {
        auto j = vm_json(vm);
        edit(j);
        return parse_vm(j.dump());
    };
    CHECK_FALSE(parse_vm("not json"));
    CHECK_FALSE(parse_vm("[]"));
    CHECK_FALSE(parse_vm(std::string(2 << 20, ' ')));
    CHECK_FALSE(mutated([](auto& j) { j["kind"] = "image"; }));
    CHECK_FALSE(mutated([](auto& j) { j.erase("name"); }));
    CHECK_FALSE(mutated([](auto& j) { j["name"] = "../etc/passwd"; }));
    CHECK_FALSE(mutated([](auto& j) { j["name"] = 7; }));
    CHECK_FALSE(mutated([](auto& j) { j["vcpus"] = 0; }));
    CHECK_FALSE(mutated([](auto& j) { j["vcpus"] = 255; }));
    CHECK_FALSE(mutated([](auto& j) { j["vcpus"] = -1; }));
    CHECK_FALSE(mutated([](auto& j) { j["vcpus"] = 1.5; }));
    CHECK_FALSE(mutated([](auto& j) { j["memory_mib"] = 1; }));
    CHECK_FALSE(mutated([](auto& j) { j["boot"]["kernel"] = "/boot/vmlinuz"; }));
    CHECK_FALSE(mutated([](auto& j) { j["boot"]["kernel"] = std::string(64, 'A'); }));
    CHECK_FALSE(mutated([](auto& j) { j["boot"]["firmware"] = std::string(64, 'c'); })); // two boot sources
    CHECK_FALSE(mutated([](auto& j) { j["boot"].erase("kernel"); }));                    // none
    CHECK_FALSE(mutated([](auto& j) { j["boot"] = "x"; }));
    CHECK_FALSE(mutated([](auto& j) { j["transport"] = "isa"; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["id"] = "has space"; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["disk"] = "a/b"; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["cache"] = "directsync"; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["read_only"] = "yes"; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"].push_back(j["disks"][0]); })); // duplicate id
    CHECK_FALSE(mutated([](auto& j) {
        auto d = j["disks"][0];
        d["id"] = "two";
        d["disk"] = "other";
        j["disks"].push_back(d); // a second boot disk
    }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"] = nlohmann::json::array({ 1 }); }));
    CHECK_FALSE(mutated([](auto& j) { j["labels"]["Bad"] = "x"; }));
    CHECK_FALSE(mutated([](auto& j) { j["labels"]["ok"] = 3; }));
    CHECK_FALSE(mutated([](auto& j) { j["metadata"]["k"] = std::string(5000, 'x'); }));
    CHECK_FALSE(mutated([](auto& j) { j["description"] = std::string(5000, 'x'); }));
    CHECK_FALSE(mutated([](auto& j) {
        for (int i = 0; i < 70; ++i)
            j["disks"].push_back(j["disks"][0]);
    }));

    MachineImageRecord m;
    m.name = "img";
    m.spec = vm.spec;
    m.disks = { MachineImageDisk { "boot", false, true, false, "none", 1 << 20, { LayerId::random(), LayerId::random() }, "img-disk-boot-2025-01-01" },
        MachineImageDisk { "tmp", false, false, true, "unsafe", 1 << 20, {}, "" } };
    m.stall_us = 42;
    auto mback = parse_machine_image(encode_machine_image(m));
    REQUIRE_MESSAGE(mback, (mback ? "" : mback.error().message));
    CHECK(encode_machine_image(mback.value()) == encode_machine_image(m));
    auto mmut = [&](auto&& edit) {
        auto j = machine_image_json(m);
        edit(j);
        return parse_machine_image(j.dump());
    };
    CHECK_FALSE(mmut([](auto& j) { j["disks"][0]["layers"] = nlohmann::json::array(); }));      // data disk without layers
    CHECK_FALSE(mmut([](auto& j) { j["disks"][1]["layers"] = j["disks"][0]["layers"]; }));      // scratch with layers
    CHECK_FALSE(mmut([](auto& j) { j["disks"][0]["layers"][0] = "not-a-layer"; }));
    CHECK_FALSE(mmut([](auto& j) { j["disks"][0]["size"] = 1000; }));
    CHECK_FALSE(mmut([](auto& j) { j["disks"][0]["size"] = 0; }));
    CHECK_FALSE(mmut([](auto& j) { j["stall_us"] = "fast"; }));
    CHECK_FALSE(mmut([](auto& j) { j["source_vm"] = 1; }));
    CHECK_FALSE(mmut([](auto& j) { j["disks"][0]["layer_name"] = "../x"; }));
    CHECK_FALSE(mmut([](auto& j) { j.erase("disks"); }));
    // Guest flush, os_state and the source VM's instance id round-trip and are checked.
    m.guest_flush = "not-quiesced: the guest agent did not answer";
    m.generalized = true;
    m.source_vm.instance_id = "i-00112233aabbccdd";
    auto flushed = parse_machine_image(encode_machine_image(m));
    REQUIRE_MESSAGE(flushed, (flushed ? "" : flushed.error().message));
    CHECK(flushed.value().guest_flush == m.guest_flush);
    CHECK(flushed.value().generalized);
    CHECK(flushed.value().source_vm.instance_id == "i-00112233aabbccdd");
    CHECK(machine_image_json(m)["os_state"] == "generalized");
    CHECK_FALSE(mmut([](auto& j) { j["guest_flush"] = "maybe"; }));
    CHECK_FALSE(mmut([](auto& j) { j["os_state"] = "specialized"; })); // contradicts generalized: true
    CHECK_FALSE(mmut([](auto& j) { j["os_state"] = "frozen"; }));
    CHECK_FALSE(mmut([](auto& j) { j["source_vm"]["instance_id"] = "I-XYZ"; }));
    CHECK(mmut([](auto& j) {
        j.erase("generalized");
        j["os_state"] = "specialized";
    }).value().generalized == false);
    m.guest_flush.clear();
    m.generalized = false;
    vm.instance_id = "i-abc";
    CHECK(parse_vm(encode_vm(vm)).value().instance_id == "i-abc");
    vm.instance_id = "web-1";
    CHECK_FALSE(parse_vm(encode_vm(vm)));
    vm.instance_id.clear();

    TemplateRecord t;
    t.name = "small";
    t.spec = vm.spec;
    t.boot_image = "debian";
    t.disks = { TemplateDisk { "data", 1 << 30, false, false, "none" } };
    auto tback = parse_template(encode_template(t));
    REQUIRE_MESSAGE(tback, (tback ? "" : tback.error().message));
    CHECK(encode_template(tback.value()) == encode_template(t));
    auto tj = template_json(t);
    tj["disks"][0]["id"] = "boot"; // the boot disk's id is reserved
    CHECK_FALSE(parse_template(tj.dump()));
    tj = template_json(t);
    tj.erase("boot_image");
    CHECK_FALSE(parse_template(tj.dump()));
}

TEST_CASE("record names are checked and a record must name itself")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    auto held = RecordLock::take(store->root(), true);
    REQUIRE(held);
    for (std::string const& bad : std::vector<std::string> { "", "..", "../x", "a/b", ".hidden", "-opt", std::string(129, 'n'), "a\nb" })
        CHECK_FALSE(write_record(store->root(), RecordKind::Vm, bad, "{}", true));
    VmRecord vm;
    vm.name = "a";
    vm.spec.boot.firmware = std::string(64, 'f');
    // An artifact that is not in the store cannot be named.
    CHECK(save_vm(held.value(), vm, true).error().kind == ErrorKind::NotFound);
    // A record stored under another name is refused on load.
    REQUIRE(write_record(store->root(), RecordKind::Vm, "b", encode_vm(vm), true));
    CHECK_FALSE(load_vm(held.value(), "b"));
    CHECK(load_vm(held.value(), "nope").error().kind == ErrorKind::NotFound);
    CHECK_FALSE(check_labels({ { "ok", "UPPER" } }));
    CHECK(check_labels({ { "ok", "fine-1" } }));
    CHECK_FALSE(parse_key_values("a=1,a=2", "--labels"));
    CHECK_FALSE(parse_key_values("novalue", "--labels"));
}

TEST_CASE("boot artifacts are stored once by digest and collected when unused")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    auto held = RecordLock::take(store->root(), true);
    REQUIRE(held);
    auto a = put_artifact(held.value(), make_file(dir, "k1", "same bytes"));
    auto b = put_artifact(held.value(), make_file(dir, "k2", "same bytes"));
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a.value() == b.value());
    // sha256("same bytes")
    CHECK(a.value() == strata::test::sh_out("printf 'same bytes' | sha256sum | cut -c1-64").substr(0, 64));
    CHECK(files_in(dir / "home/artifacts") == std::set<std::string> { a.value() });
    CHECK_FALSE(put_artifact(held.value(), dir / "missing"));
    CHECK_FALSE(put_artifact(held.value(), dir.path())); // a directory
    auto removed = gc_artifacts(held.value());
    REQUIRE(removed);
    CHECK(removed.value() == std::vector<std::string> { a.value() });
    CHECK(files_in(dir / "home/artifacts").empty());
    CHECK_FALSE(put_artifact_bytes(held.value(), std::vector<std::byte>(3), std::string(64, '0'))); // digest mismatch
}

TEST_CASE("machine images: differential layers, GC keeps what images use, VMs from an image copy nothing")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    VmRecord vm = make_vm(*store, dir);
    write_block(*store, "vm-data", 0, 'A');
    write_block(*store, "vm-tmp", 0, 'S');
    auto one = capture(*store, vm, "one");
    REQUIRE(one.disks.size() == 2);
    CHECK(one.disks[0].layers.size() == 1);
    CHECK(one.disks[1].scratch);
    CHECK(one.disks[1].layers.empty());
    CHECK(one.disks[0].layer_name.rfind("one-disk-data-" + one.created.substr(0, 10), 0) == 0);
    CHECK(one.source_vm.name == "vm");
    CHECK(one.source_vm.labels.at("team") == "blue");
    CHECK(one.stall_us == 0);

    // The second image shares the first's layer and adds only what changed since.
    write_block(*store, "vm-data", 8192, 'B');
    auto two = capture(*store, vm, "two");
    REQUIRE(two.disks[0].layers.size() == 2);
    CHECK(two.disks[0].layers[0] == one.disks[0].layers[0]);
    struct stat st {};
    REQUIRE(::stat(store->layer_path(two.disks[0].layers[1]).c_str(), &st) == 0);
    auto const new_layer_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
    // One 4 KiB block of data plus the layer's own metadata, nowhere near the disk.
    CHECK(new_layer_bytes < 256 * 1024);
    MachineImageRecord again;
    again.name = "two";
    CHECK(capture_stopped_vm(*store, vm, again).error().kind == ErrorKind::Exists);

    // Three VMs from image two; each sees the captured data, scratch starts empty.
    for (std::string n : { "c1", "c2", "c3" }) {
        VmOverrides o;
        o.vcpus = 2;
        o.labels = std::map<std::string, std::string> { { "clone", "yes" } };
        auto c = create_vm_from_machine_image(*store, n, "two", o);
        REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
        CHECK(c.value().spec.vcpus == 2);
        CHECK(c.value().labels.at("clone") == "yes");
        CHECK(c.value().metadata.at("startup") == "echo hi");
        CHECK(read_block(*store, n + "-disk-data", 0) == 'A');
        CHECK(read_block(*store, n + "-disk-data", 8192) == 'B');
        CHECK(read_block(*store, n + "-disk-tmp", 0) == '\0');
        auto disk = store->get(ObjectKind::Disk, n + "-disk-data");
        REQUIRE(disk);
        // The image's two frozen layers; its own top comes with its first writable open.
        CHECK(disk.value().layers == two.disks[0].layers);
    }
    write_block(*store, "c1-disk-data", 0, 'C');
    CHECK(store->get(ObjectKind::Disk, "c1-disk-data").value().layers.size() == 3);
    CHECK(read_block(*store, "c2-disk-data", 0) == 'A');
    CHECK(create_vm_from_machine_image(*store, "c1", "two", {}).error().kind == ErrorKind::Exists);
    CHECK(create_vm_from_machine_image(*store, "c4", "nope", {}).error().kind == ErrorKind::NotFound);

    // Commit must not rewrite a layer a machine image names.
    CHECK(store->commit_disk("c1-disk-data").error().kind == ErrorKind::Busy);

    // A disk a VM record names cannot be deleted; delete the source VM's record,
    // then its disks: the images' layers survive GC.
    CHECK(store->remove(ObjectKind::Disk, "vm-data").error().kind == ErrorKind::Busy);
    {
        auto held = RecordLock::take(store->root(), true);
        REQUIRE(held);
        REQUIRE(remove_record(store->root(), RecordKind::Vm, "vm"));
    }
    REQUIRE(store->remove(ObjectKind::Disk, "vm-data"));
    REQUIRE(store->gc());
    for (auto const& id : two.disks[0].layers)
        CHECK(::access(store->layer_path(id).c_str(), F_OK) == 0);
    // Deleting image one keeps its layer (image two and the clones use it)...
    REQUIRE(delete_machine_image(*store, "one"));
    CHECK(::access(store->layer_path(one.disks[0].layers[0]).c_str(), F_OK) == 0);
    // ...and deleting two keeps what the clones' disks still use.
    REQUIRE(delete_machine_image(*store, "two"));
    CHECK(read_block(*store, "c3-disk-data", 8192) == 'B');
    for (std::string n : { "c1", "c2", "c3" }) {
        {
            auto held = RecordLock::take(store->root(), true);
            REQUIRE(held);
            REQUIRE(remove_record(store->root(), RecordKind::Vm, n));
        }
        REQUIRE(store->remove(ObjectKind::Disk, n + "-disk-data"));
    }
    for (auto const& id : two.disks[0].layers)
        CHECK(::access(store->layer_path(id).c_str(), F_OK) != 0);
}

TEST_CASE("VM creation from an image is O(1) in the disk size")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    std::uint64_t const sizes[] = { 1ULL << 30, 100ULL << 30 };
    for (auto size : sizes)
        REQUIRE(store->create_disk("big" + std::to_string(size >> 30), size));
    {
        auto held = RecordLock::take(store->root(), true);
        REQUIRE(held);
        auto digest = put_artifact(held.value(), make_file(dir, "fw", "fw"));
        REQUIRE(digest);
        for (auto size : sizes) {
            std::string tag = std::to_string(size >> 30);
            VmRecord vm;
            vm.name = "src" + tag;
            vm.spec.boot.firmware = digest.value();
            vm.disks = { VmDisk { "d", "big" + tag, false, true, false, "none", false } };
            REQUIRE(save_vm(held.value(), vm, true));
        }
    }
    for (auto size : sizes) {
        std::string tag = std::to_string(size >> 30);
        auto vm = load_vm(*store, "src" + tag);
        REQUIRE(vm);
        write_block(*store, "big" + tag, size - 4096, 'Z');
        capture(*store, vm.value(), "mi" + tag);
        auto before = files_in(dir / "home/layers");
        auto t0 = std::chrono::steady_clock::now();
        auto c = create_vm_from_machine_image(*store, "new" + tag, "mi" + tag, {});
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
        MESSAGE("VM from a machine image with a ", tag, " GiB disk: ", us, " us (for information; bench/ times it)");
        REQUIRE(c);
        // Creation writes manifests only; the disk's first writable open makes
        // its top, one small file whatever the disk's size.
        CHECK(files_in(dir / "home/layers") == before);
        REQUIRE(store->open_disk("new" + tag + "-disk-d"));
        auto after = files_in(dir / "home/layers");
        REQUIRE(after.size() == before.size() + 1);
        for (auto const& f : after)
            if (!before.count(f)) {
                struct stat st {};
                REQUIRE(::stat((dir / ("home/layers/" + f)).c_str(), &st) == 0);
                // A new empty top: the same few allocated bytes whatever the size.
                CHECK(static_cast<std::uint64_t>(st.st_blocks) * 512 < 1 << 20);
            }
        CHECK(read_block(*store, "new" + tag + "-disk-d", size - 4096) == 'Z');
    }
}

TEST_CASE("a capture cut short leaves no image and a consistent store")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    VmRecord vm = make_vm(*store, dir);
    write_block(*store, "vm-data", 0, 'A');

    // Crash after freezing the disk, before the image record: the disk still
    // names its (now frozen) layers; no image exists; GC removes nothing used.
    auto before = store->get(ObjectKind::Disk, "vm-data");
    REQUIRE(before);
    REQUIRE(store->freeze_disk("vm-data"));
    // A half-written record (the temp file of an interrupted atomic write).
    std::ofstream(dir / "home/machine-images/.img.json.tmp-abcdef") << "{\"kind\": \"machine-im";
    {
        auto held = RecordLock::take(store->root(), false);
        REQUIRE(held);
        auto all = list_machine_images(held.value());
        REQUIRE(all);
        CHECK(all.value().empty());
    }
    REQUIRE(store->gc());
    CHECK(read_block(*store, "vm-data", 0) == 'A');
    write_block(*store, "vm-data", 4096, 'B');

    // Crash between freezing and the push record: the disk names a frozen top;
    // recording an image over a writable or missing layer is refused, nothing written.
    MachineImageRecord bad;
    bad.name = "bad";
    bad.spec = vm.spec;
    auto now = store->get(ObjectKind::Disk, "vm-data");
    REQUIRE(now);
    bad.disks = { MachineImageDisk { "data", false, true, false, "none", 1 << 20, now.value().layers, "" } };
    CHECK(record_machine_image(*store, bad).error().kind == ErrorKind::Usage); // the top is writable
    bad.disks[0].layers = { LayerId::random() };
    CHECK(record_machine_image(*store, bad).error().kind == ErrorKind::NotFound);
    bad.disks[0].layers = before.value().layers; // frozen now: fine
    REQUIRE(record_machine_image(*store, bad));
    CHECK(record_machine_image(*store, bad).error().kind == ErrorKind::Exists);
    // A corrupt record stops GC rather than letting it guess.
    std::ofstream(dir / "home/machine-images/junk.json") << "{";
    CHECK_FALSE(store->gc());
    ::unlink((dir / "home/machine-images/junk.json").c_str());
    CHECK(store->gc());
}

TEST_CASE("export and import into another store, and a corrupted archive imports nothing")
{
    TempDir dir;
    auto a = open_store(dir / "a");
    auto b = open_store(dir / "b");
    VmRecord vm = make_vm(*a, dir);
    write_block(*a, "vm-data", 0, 'A');
    write_block(*a, "vm-data", 4096, 'X');
    capture(*a, vm, "first");
    // The second layer hides the first's blocks, with a zero block between two
    // data blocks (one archive chunk): the zeros must hide 'X' after import too.
    write_block(*a, "vm-data", 0, 'B');
    write_block(*a, "vm-data", 4096, '\0');
    write_block(*a, "vm-data", 8192, 'D');
    auto img = capture(*a, vm, "img");
    REQUIRE(img.disks[0].layers.size() == 2);
    REQUIRE(export_machine_image(*a, "img", dir / "img.strata"));

    // A corrupted copy: one byte flipped in the middle.
    REQUIRE(strata::test::sh("cp '" + dir / "img.strata" + "' '" + dir / "bad.strata" + "'") == 0);
    {
        std::fstream f(dir / "bad.strata", std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(0, std::ios::end);
        auto size = static_cast<std::streamoff>(f.tellg());
        f.seekp(size / 2);
        char c = 0;
        f.seekg(size / 2);
        f.read(&c, 1);
        c = static_cast<char>(c ^ 0x5a);
        f.seekp(size / 2);
        f.write(&c, 1);
    }
    auto layers_before = files_in(dir / "b/layers");
    auto bad = import_machine_image(*b, "img", dir / "bad.strata");
    CHECK_FALSE(bad);
    CHECK(files_in(dir / "b/layers") == layers_before);
    CHECK(files_in(dir / "b/machine-images").empty());
    CHECK(files_in(dir / "b/artifacts").empty());

    auto got = import_machine_image(*b, "img", dir / "img.strata");
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    CHECK(got.value().disks.size() == 2);
    CHECK(got.value().disks[0].layers.size() == 2);
    CHECK(got.value().disks[0].layers[0] != img.disks[0].layers[0]); // new IDs in the new store
    CHECK(got.value().spec.boot.firmware == vm.spec.boot.firmware);
    CHECK(::access(artifact_path(b->root(), vm.spec.boot.firmware).c_str(), F_OK) == 0);
    CHECK(got.value().source_vm.metadata.at("startup") == "echo hi");
    CHECK(import_machine_image(*b, "img", dir / "img.strata").error().kind == ErrorKind::Exists);
    auto c = create_vm_from_machine_image(*b, "copy", "img", {});
    REQUIRE(c);
    CHECK(read_block(*b, "copy-disk-data", 0) == 'B');
    CHECK(read_block(*b, "copy-disk-data", 4096) == '\0');
    CHECK(read_block(*b, "copy-disk-data", 8192) == 'D');
    CHECK(read_block(*b, "copy-disk-tmp", 0) == '\0');
}

TEST_CASE("kill -9 during a stopped VM's capture: the image is absent or complete, GC still works")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    VmRecord vm = make_vm(*store, dir);
    write_block(*store, "vm-data", 0, 'A');
    // How long one capture takes here, so the kills spread over all of it.
    auto t0 = std::chrono::steady_clock::now();
    capture(*store, vm, "timing");
    auto span_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    unsigned complete = 0, absent = 0;
    unsigned const runs = 30;
    for (unsigned i = 0; i < runs; ++i) {
        std::string name = "k" + std::to_string(i);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            auto s = Store::open(dir / "home");
            MachineImageRecord m;
            m.name = name;
            bool done = s && capture_stopped_vm(*s.value(), vm, m);
            ::_exit(done ? 0 : 1);
        }
        // From "before anything" to "long done" (process start-up included).
        ::usleep(static_cast<useconds_t>(span_us * 3 * i / runs));
        ::kill(pid, SIGKILL);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        {
            auto held = RecordLock::take(store->root(), false);
            REQUIRE(held);
            auto names = record_names(store->root(), RecordKind::MachineImage);
            REQUIRE(names);
            bool present = std::find(names.value().begin(), names.value().end(), name) != names.value().end();
            if (present) {
                // Complete: it parses and every layer it names is in the store.
                auto m = load_machine_image(held.value(), name);
                REQUIRE_MESSAGE(m, (m ? "" : m.error().message));
                for (auto const& d : m.value().disks)
                    for (auto const& id : d.layers)
                        CHECK(::access(store->layer_path(id).c_str(), F_OK) == 0);
                ++complete;
            } else {
                ++absent;
            }
        }
        REQUIRE(store->gc());
        // The disk opens writable again wherever the kill fell (a frozen top
        // gets a new writable one at this open).
        auto chain = store->open_disk("vm-data", ChainOptions { CacheMode::Writeback, EngineKind::Sync, 8, false });
        REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    }
    MESSAGE("capture takes ", span_us, " us; complete ", complete, ", absent ", absent);
    CHECK(read_block(*store, "vm-data", 0) == 'A');
}
