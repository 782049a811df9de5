// VM, instance-template and machine-image records in a real store directory: the
// parsers against hostile text, names, and boot artifacts by digest.
#include "tests/store/machine_image_util.h"

using namespace strata;
using namespace strata::test;

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

TEST_CASE("disk rate limits and groups round-trip in VM records and templates, hostile ones are refused")
{
    RateLimiterConfig const limit { TokenBucketConfig { 5 << 20, 0, 100 }, TokenBucketConfig { 50, 10, 100 } };
    VmRecord vm;
    vm.name = "db";
    vm.spec.boot.firmware = std::string(64, 'a');
    vm.disks = { VmDisk { "boot", "db-disk-boot", false, true, false, "none", true, limit, "g" },
        VmDisk { "data", "db-disk-data", false, false, false, "none", true, limit, "g" },
        VmDisk { "logs", "db-disk-logs", false, false, false, "none", true, RateLimiterConfig { {}, TokenBucketConfig { 500, 0, 1000 } }, "" } };
    auto back = parse_vm(encode_vm(vm));
    REQUIRE_MESSAGE(back, (back ? "" : back.error().message));
    CHECK(back.value().disks[0].rate_limit == limit);
    CHECK(back.value().disks[1].rate_limit_group == "g");
    CHECK(back.value().disks[2].rate_limit.ops.size == 500);
    CHECK(back.value().disks[2].rate_limit.bandwidth.size == 0);
    CHECK(encode_vm(back.value()) == encode_vm(vm));
    // A disk without a limit writes neither field (older records read as before).
    vm.disks[2].rate_limit = {};
    CHECK_FALSE(vm_json(vm)["disks"][2].contains("rate_limiter"));
    CHECK_FALSE(vm_json(vm)["disks"][2].contains("rate_limit_group"));

    auto mutated = [&](auto&& edit) {
        auto j = vm_json(vm);
        edit(j);
        return parse_vm(j.dump());
    };
    CHECK(mutated([](auto&) {}));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limiter"] = 5; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limiter"]["bandwidth"]["refill_time"] = 0; })); // a size needs a refill time
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limiter"]["bandwidth"]["size"] = -1; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limiter"]["bandwidth"]["size"] = 1ull << 60; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limiter"]["bandwidth"]["speed"] = 1; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limiter"]["iops"] = nlohmann::json::object(); }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limit_group"] = "../g"; }));
    CHECK_FALSE(mutated([](auto& j) { j["disks"][0]["rate_limit_group"] = 3; }));
    // Two disks of one group with different limits: one limiter cannot be both.
    CHECK_FALSE(mutated([](auto& j) { j["disks"][1]["rate_limiter"]["ops"]["size"] = 51; }));

    TemplateRecord t;
    t.name = "db";
    t.spec = vm.spec;
    t.boot_image = "debian";
    t.boot_rate_limit = limit;
    t.boot_rate_limit_group = "g";
    t.disks = { TemplateDisk { "data", 1 << 30, false, false, "none", limit, "g" } };
    auto tback = parse_template(encode_template(t));
    REQUIRE_MESSAGE(tback, (tback ? "" : tback.error().message));
    CHECK(tback.value().boot_rate_limit == limit);
    CHECK(tback.value().disks[0].rate_limit_group == "g");
    CHECK(encode_template(tback.value()) == encode_template(t));
    auto tj = template_json(t);
    tj["boot_disk"]["rate_limiter"]["ops"]["size"] = 7;
    CHECK_FALSE(parse_template(tj.dump()));
    tj = template_json(t);
    tj["boot_disk"] = "fast";
    CHECK_FALSE(parse_template(tj.dump()));
    t.boot_rate_limit = {};
    t.boot_rate_limit_group.clear();
    t.disks[0].rate_limit_group.clear();
    CHECK_FALSE(template_json(t).contains("boot_disk"));
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

TEST_CASE("a suspended VM's disks are refused to every other VM, and only VMs with a saved state folder are read for it")
{
    TempDir dir;
    auto store = open_store(dir / "home");
    auto const root = store->root();
    auto record = [&](std::string const& name, std::string const& disk, std::string const& restore_from) {
        VmRecord vm;
        vm.name = name;
        vm.spec.boot.firmware = std::string(64, 'f');
        vm.disks = { VmDisk { "d0", disk, false, true, false, "none", true } };
        vm.restore_from = restore_from;
        REQUIRE(write_record(root, RecordKind::Vm, name, encode_vm(vm), true));
    };
    // No VM has saved state yet: nothing to refuse.
    CHECK(refuse_if_suspended_vm_disk(root, "shared"));

    // Suspended: its state folder, then its record (the order vms suspend keeps).
    std::filesystem::create_directories(vm_state_dir(root, "sleeper"));
    record("sleeper", "shared", "suspended");
    auto refused = refuse_if_suspended_vm_disk(root, "shared");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().kind == ErrorKind::Busy);
    CHECK(refused.error().message.find("suspended vm 'sleeper'") != std::string::npos);
    CHECK(refuse_if_suspended_vm_disk(root, "shared", "sleeper")); // its own VMM resumes it
    CHECK(refuse_if_suspended_vm_disk(root, "other"));

    // Made from a running-state image and not started: a folder, not suspended.
    std::filesystem::create_directories(vm_state_dir(root, "clone"));
    record("clone", "clone-disk", "machine-image:img");
    CHECK(refuse_if_suspended_vm_disk(root, "clone-disk"));
    // A folder whose VM is gone (deleted meanwhile) and a suspend's folder in
    // the making name no record.
    std::filesystem::create_directories(vm_state_dir(root, "gone"));
    std::filesystem::create_directories(vm_state_dir(root, "sleeper.new"));
    CHECK(refuse_if_suspended_vm_disk(root, "other"));
    CHECK_FALSE(refuse_if_suspended_vm_disk(root, "shared"));

    // The records of VMs without a saved state folder are not read: an
    // unreadable one of an unrelated VM no longer stops every disk from opening.
    REQUIRE(write_record(root, RecordKind::Vm, "broken", "not json", true));
    CHECK(refuse_if_suspended_vm_disk(root, "other"));
    CHECK_FALSE(refuse_if_suspended_vm_disk(root, "shared"));
    // A suspended VM's own record that cannot be read still refuses (as an
    // error): its disks are not handed out on a guess.
    std::filesystem::create_directories(vm_state_dir(root, "broken"));
    CHECK_FALSE(refuse_if_suspended_vm_disk(root, "other"));
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

TEST_CASE("network interfaces: the mapping round-trips, hostile entries are refused, clones get new MACs")
{
    VmRecord vm;
    vm.name = "net-1";
    vm.spec.boot.firmware = std::string(64, 'a');
    vm.spec.nets = { VmNet { "net0", "tap0", "02:00:00:00:00:01", false }, VmNet { "data", "tap-data", "", false },
        VmNet { "own", "", "", true } };
    auto back = parse_vm(encode_vm(vm));
    REQUIRE_MESSAGE(back, (back ? "" : back.error().message));
    CHECK(back.value().spec.nets == vm.spec.nets);
    CHECK(vm_json(vm)["network_interfaces"][0]["host_dev_name"] == "tap0");

    // A record without interfaces reads as before and writes no key.
    VmRecord plain = vm;
    plain.spec.nets.clear();
    CHECK(!vm_json(plain).contains("network_interfaces"));
    CHECK(parse_vm(encode_vm(plain)).value().spec.nets.empty());

    auto mutated = [&](auto&& edit) {
        auto j = vm_json(vm);
        edit(j);
        return parse_vm(j.dump());
    };
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"] = "tap0"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["host_dev_name"] = "a/b"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["host_dev_name"] = "0123456789abcdef"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["host_dev_name"] = ""; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0].erase("host_dev_name"); }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][2]["netns"] = "mine"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][2]["host_dev_name"] = "tap7"; })); // netns=auto and a tap
    CHECK(vm_json(vm)["network_interfaces"][2]["netns"] == "auto");
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["guest_mac"] = "01:00:5e:00:00:01"; })); // multicast
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["guest_mac"] = "02:00:00:00:00"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["guest_mac"] = "02:00:00:00:00:0G"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][0]["iface_id"] = "has space"; }));
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][1]["iface_id"] = "net0"; }));    // duplicate id
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][1]["host_dev_name"] = "tap0"; })); // one tap twice
    CHECK_FALSE(mutated([](auto& j) { j["network_interfaces"][1]["guest_mac"] = "02:00:00:00:00:01"; }));
    CHECK_FALSE(mutated([](auto& j) {
        for (int i = 0; i < 6; ++i)
            j["network_interfaces"].push_back({ { "iface_id", "n" + std::to_string(i) }, { "host_dev_name", "t" + std::to_string(i) } });
    }));

    auto nets = vm.spec.nets;
    fill_guest_macs(nets);
    CHECK(nets[0].guest_mac == "02:00:00:00:00:01");
    CHECK(nets[1].guest_mac.size() == 17);
    CHECK(check_vm_nets(nets));
    auto renewed = nets;
    renew_guest_macs(renewed);
    CHECK(renewed[0].guest_mac != nets[0].guest_mac);
    CHECK(renewed[1].guest_mac != nets[1].guest_mac);
    CHECK(renewed[0].host_dev_name == "tap0");
    for (auto const& n : renewed) {
        auto first = std::stoi(n.guest_mac.substr(0, 2), nullptr, 16);
        CHECK((first & 3) == 2); // locally administered, unicast
    }
}

TEST_CASE("network rate limiters and the metadata service: recorded in VMs, templates and machine images, hostile entries refused")
{
    VmRecord vm;
    vm.name = "mm-1";
    vm.spec.boot.firmware = std::string(64, 'a');
    VmNet limited { "net0", "tap0", "02:00:00:00:00:01", false };
    limited.rx_limit.bandwidth = TokenBucketConfig { 1 << 20, 0, 1000 };
    limited.tx_limit.ops = TokenBucketConfig { 500, 100, 1000 };
    vm.spec.nets = { limited, VmNet { "own", "", "02:00:00:00:00:02", true } };
    vm.spec.mmds = VmMmds { "V2", "169.254.169.254", { "net0", "own" } };
    auto back = parse_vm(encode_vm(vm));
    REQUIRE_MESSAGE(back, (back ? "" : back.error().message));
    CHECK(back.value().spec.nets == vm.spec.nets);
    CHECK(back.value().spec.mmds == vm.spec.mmds);
    auto j = vm_json(vm);
    CHECK(j["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["size"] == 1 << 20);
    CHECK(j["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["refill_time"] == 1000);
    CHECK(!j["network_interfaces"][0]["rx_rate_limiter"].contains("ops"));
    CHECK(j["network_interfaces"][0]["tx_rate_limiter"]["ops"]["one_time_burst"] == 100);
    CHECK(!j["network_interfaces"][1].contains("rx_rate_limiter")); // unlimited: not written
    CHECK(j["mmds"]["version"] == "V2");
    CHECK(j["mmds"]["network_interfaces"] == nlohmann::json::array({ "net0", "own" }));

    // Templates and machine images carry the same spec.
    TemplateRecord t;
    t.name = "tpl";
    t.spec = vm.spec;
    t.boot_image = "debian";
    auto tback = parse_template(encode_template(t));
    REQUIRE_MESSAGE(tback, (tback ? "" : tback.error().message));
    CHECK(tback.value().spec.nets == vm.spec.nets);
    CHECK(tback.value().spec.mmds == vm.spec.mmds);
    MachineImageRecord m;
    m.name = "img";
    m.spec = vm.spec;
    m.disks = { MachineImageDisk { "boot", false, true, false, "none", 1 << 20, { LayerId::random() }, "img-disk-boot-2025-01-01" } };
    auto mback = parse_machine_image(encode_machine_image(m));
    REQUIRE_MESSAGE(mback, (mback ? "" : mback.error().message));
    CHECK(mback.value().spec.nets == vm.spec.nets);
    CHECK(mback.value().spec.mmds == vm.spec.mmds);

    // A record without either reads as before and writes neither key.
    VmRecord plain = vm;
    plain.spec.nets = { VmNet { "net0", "tap0", "", false } };
    plain.spec.mmds = {};
    CHECK(!vm_json(plain).contains("mmds"));
    CHECK(!vm_json(plain)["network_interfaces"][0].contains("rx_rate_limiter"));
    CHECK(parse_vm(encode_vm(plain)).value().spec.mmds == VmMmds {});

    auto mutated = [&](auto&& edit) {
        auto jj = vm_json(vm);
        edit(jj);
        return parse_vm(jj.dump());
    };
    // Limiters: shape, names, ranges and the refill time a size needs.
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"] = 5; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bytes"] = nlohmann::json::object(); }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"] = "fast"; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["size"] = -1; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["size"] = 0; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["size"] = 1.5; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["size"] = 1ULL << 51; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"].erase("refill_time"); }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["refill_time"] = 0; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["rx_rate_limiter"]["bandwidth"]["refill"] = 1; }));
    CHECK_FALSE(mutated([](auto& x) { x["network_interfaces"][0]["tx_rate_limiter"]["ops"]["one_time_burst"] = "x"; }));
    // The metadata service: version, a link-local address, interfaces the VM has, each once.
    CHECK_FALSE(mutated([](auto& x) { x["mmds"] = "V2"; }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["version"] = "V3"; }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"].erase("version"); }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["ipv4_address"] = "10.0.0.1"; }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["ipv4_address"] = "169.254.169.254.1"; }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["ipv4_address"] = 42; }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["network_interfaces"] = nlohmann::json::array(); }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["network_interfaces"] = nlohmann::json::array({ "eth9" }); }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["network_interfaces"] = nlohmann::json::array({ "net0", "net0" }); }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["network_interfaces"] = nlohmann::json::array({ 1 }); }));
    CHECK_FALSE(mutated([](auto& x) { x["mmds"]["network_interfaces"] = "net0"; }));
    CHECK_FALSE(mutated([](auto& x) { x.erase("network_interfaces"); })); // a service with no interface
    // The same checks guard what is saved (check_spec) and a template's record.
    MachineSpec bad = vm.spec;
    bad.mmds.interfaces = { "gone" };
    CHECK_FALSE(check_spec(bad));
    auto tj = template_json(t);
    tj["mmds"]["version"] = "v2";
    CHECK_FALSE(parse_template(tj.dump()));

    // Interfaces replaced (vms create --net over a template or an image): the
    // service follows them, or goes when there are none.
    VmMmds moved = vm.spec.mmds;
    retarget_mmds(moved, { VmNet { "eth0", "tap9", "", false } });
    CHECK(moved == VmMmds { "V2", "169.254.169.254", { "eth0" } });
    retarget_mmds(moved, {});
    CHECK(!moved.enabled());
    VmRecord over = vm;
    VmOverrides o;
    o.nets = std::vector<VmNet> { VmNet { "eth1", "tap1", "", false } };
    apply_overrides(over, o);
    CHECK(over.spec.mmds.interfaces == std::vector<std::string> { "eth1" });
    o.mmds = VmMmds { "V1", "169.254.1.1", {} }; // no iface=: every interface
    apply_overrides(over, o);
    CHECK(over.spec.mmds == VmMmds { "V1", "169.254.1.1", { "eth1" } });
    o.mmds = VmMmds {};
    apply_overrides(over, o);
    CHECK(!over.spec.mmds.enabled());
}
