// Machine images in a real store directory: garbage collection with machine
// images, differential sharing between successive images, O(1) VMs from an image,
// and atomicity when a capture is cut short or killed.
#include "tests/store/machine_image_util.h"
#include "store/record_files.h"

#include <filesystem>
#include <fstream>

using namespace strata;
using namespace strata::test;

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

TEST_CASE("machine images keep the network mapping, VMs from them get new MACs unless told, or replaced interfaces")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    VmRecord vm = make_vm(*store, dir);
    vm.spec.nets = { VmNet { "net0", "tap0", "02:00:00:00:00:01", false } };
    resave_vm(*store, vm);
    auto image = capture(*store, vm, "img");
    REQUIRE(image.spec.nets.size() == 1);
    CHECK(image.spec.nets[0] == vm.spec.nets[0]);

    auto a = create_vm_from_machine_image(*store, "a", "img", {}).value();
    auto b = create_vm_from_machine_image(*store, "b", "img", {}).value();
    REQUIRE(a.spec.nets.size() == 1);
    CHECK(a.spec.nets[0].host_dev_name == "tap0");
    CHECK(a.spec.nets[0].guest_mac != "02:00:00:00:00:01");
    CHECK(a.spec.nets[0].guest_mac != b.spec.nets[0].guest_mac);

    VmOverrides keep;
    keep.keep_macs = true;
    CHECK(create_vm_from_machine_image(*store, "k", "img", keep).value().spec.nets[0].guest_mac == "02:00:00:00:00:01");

    VmOverrides other;
    other.nets = std::vector<VmNet> { VmNet { "eth", "tap9", "", false } };
    auto c = create_vm_from_machine_image(*store, "c", "img", other).value();
    REQUIRE(c.spec.nets.size() == 1);
    CHECK(c.spec.nets[0].host_dev_name == "tap9");
    CHECK(c.spec.nets[0].guest_mac.size() == 17);
    // What was recorded is what was returned.
    auto held = RecordLock::take(store->root(), false);
    REQUIRE(held);
    CHECK(load_vm(held.value(), "c").value().spec.nets == c.spec.nets);
}

TEST_CASE("clones of a running-state image get new MACs unless told, and stay netns=auto")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    VmRecord vm = make_vm(*store, dir);
    vm.spec.nets = { VmNet { "eth0", "", "02:00:00:00:00:01", true } };
    resave_vm(*store, vm);
    capture(*store, vm, "img");
    // Made running-state by hand: its record says so and its folder holds a
    // state and a memory file (the store links them, never reads them).
    {
        auto const path = record_path(store->root(), RecordKind::MachineImage, "img");
        auto j = nlohmann::json::parse(std::ifstream(path));
        j["state"] = "running";
        std::ofstream(path, std::ios::trunc) << j.dump();
        auto const state = machine_state_dir(store->root(), "img");
        std::filesystem::create_directories(state);
        std::ofstream(state / "state") << "s";
        std::ofstream(state / "memory") << "m";
    }

    auto a = create_vm_from_machine_image(*store, "a", "img", {});
    REQUIRE_MESSAGE(a, (a ? "" : a.error().message));
    auto b = create_vm_from_machine_image(*store, "b", "img", {}).value();
    REQUIRE(a.value().spec.nets.size() == 1);
    CHECK(a.value().restore_from == "machine-image:img");
    CHECK(a.value().spec.nets[0].netns_auto);
    CHECK(a.value().spec.nets[0].guest_mac.size() == 17);
    CHECK(a.value().spec.nets[0].guest_mac != "02:00:00:00:00:01");
    CHECK(a.value().spec.nets[0].guest_mac != b.spec.nets[0].guest_mac);

    VmOverrides keep;
    keep.keep_macs = true;
    CHECK(create_vm_from_machine_image(*store, "k", "img", keep).value().spec.nets[0].guest_mac == "02:00:00:00:00:01");

    // --net ...,mac=: that MAC, under the image's interface id.
    VmOverrides given;
    given.nets = std::vector<VmNet> { VmNet { "x", "", "02:00:00:00:00:42", true } };
    auto g = create_vm_from_machine_image(*store, "g", "img", given).value();
    CHECK(g.spec.nets[0].guest_mac == "02:00:00:00:00:42");
    CHECK(g.spec.nets[0].id == "eth0");

    // A malformed or multicast MAC is refused and records nothing.
    for (std::string bad : { "02:00:00:00:00:4", "01:00:5e:00:00:01", "02:00:00:00:00:zz" }) {
        VmOverrides o;
        o.nets = std::vector<VmNet> { VmNet { "eth0", "", bad, true } };
        auto r = create_vm_from_machine_image(*store, "bad", "img", o);
        REQUIRE_FALSE(r);
        CHECK(r.error().kind == ErrorKind::Usage);
        CHECK(r.error().message.find("MAC") != std::string::npos);
        auto held = RecordLock::take(store->root(), false);
        REQUIRE(held);
        CHECK_FALSE(load_vm(held.value(), "bad"));
        CHECK_FALSE(std::filesystem::exists(vm_state_dir(store->root(), "bad")));
        CHECK_FALSE(store->get(ObjectKind::Disk, "bad-disk-data"));
    }
}
