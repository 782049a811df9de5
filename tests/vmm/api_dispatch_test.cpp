// The API dispatcher (vmm/api/dispatch.h) over a fake controller: status codes,
// reply bodies, pre/post-boot ordering, error kinds to statuses, and that a refused
// request never reaches the controller.
#include "tests/vmm/api_fake_controller.h"
#include "vmm/api/dispatch.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace strata;
using namespace strata::api;
using nlohmann::json;

namespace {

json fault_of(HttpReply const& reply)
{
    auto j = json::parse(reply.body);
    REQUIRE(j.contains("fault_message"));
    return j["fault_message"];
}

void configure(fake::FakeController& vm)
{
    REQUIRE(handle_request(vm, "PUT", "/boot-source", R"({"firmware_path": "/fw.elf", "boot_args": "verbose=1"})").status == 204);
    REQUIRE(handle_request(vm, "PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64, "cpu_template": "minimal"})").status == 204);
    REQUIRE(handle_request(vm, "PUT", "/drives/root", R"({"drive_id": "root", "disk_name": "d1", "is_root_device": true})").status == 204);
    REQUIRE(handle_request(vm, "PUT", "/drives/scratch", R"({"drive_id": "scratch", "path_on_host": "/tmp/s.img", "is_root_device": false, "scratch": true, "cache_type": "Writeback"})").status == 204);
}

} // namespace

TEST_CASE("GET / reports Firecracker's instance info")
{
    fake::FakeController vm;
    auto reply = handle_request(vm, "GET", "/", "");
    CHECK(reply.status == 200);
    auto j = json::parse(reply.body);
    CHECK(j == json { { "id", "vm-under-test" }, { "state", "Not started" }, { "vmm_version", "0.1.0-test" }, { "app_name", "strata" } });
    vm.set_state(VmState::Paused);
    CHECK(json::parse(handle_request(vm, "GET", "/", "").body)["state"] == "Paused");
}

TEST_CASE("configure, read back, start, pause, resume, capture")
{
    fake::FakeController vm;
    configure(vm);
    auto config = json::parse(handle_request(vm, "GET", "/vm/config", "").body);
    CHECK(config["boot-source"] == json { { "firmware_path", "/fw.elf" }, { "boot_args", "verbose=1" } });
    CHECK(config["machine-config"] == json { { "vcpu_count", 2 }, { "mem_size_mib", 64 }, { "smt", false }, { "cpu_template", "minimal" }, { "track_dirty_pages", false } });
    REQUIRE(config["drives"].size() == 2);
    CHECK(config["drives"][0]["disk_name"] == "d1");
    CHECK(config["drives"][1]["cache_type"] == "Writeback");
    CHECK(config["drives"][1]["scratch"] == true);
    // The config replays: each drive object is a valid PUT body.
    CHECK(handle_request(vm, "PUT", "/drives/scratch", config["drives"][1].dump()).status == 204);

    CHECK(handle_request(vm, "PUT", "/actions", R"({"action_type": "InstanceStart"})").status == 204);
    CHECK(json::parse(handle_request(vm, "GET", "/", "").body)["state"] == "Running");
    CHECK(handle_request(vm, "PATCH", "/vm", R"({"state": "Paused"})").status == 204);
    CHECK(json::parse(handle_request(vm, "GET", "/", "").body)["state"] == "Paused");
    CHECK(handle_request(vm, "PATCH", "/vm", R"({"state": "Resumed"})").status == 204);

    auto snap = handle_request(vm, "PUT", "/snapshot/disks", R"({"snapshot_name": "s1"})");
    CHECK(snap.status == 200);
    CHECK(json::parse(snap.body) == json { { "name", "s1" }, { "stall_us", 1234 } });
    auto image = handle_request(vm, "PUT", "/machine-images", R"({"name": "img", "labels": {"env": "test"}})");
    CHECK(image.status == 200);
    CHECK(json::parse(image.body)["stall_us"] == 567);

    auto metrics = json::parse(handle_request(vm, "GET", "/metrics", "").body);
    REQUIRE(metrics["disks"].size() == 2);
    CHECK(metrics["disks"][0]["drive_id"] == "root");
    CHECK(metrics["disks"][0]["bytes_read"] == 8192);
    CHECK(metrics["disks"][0]["bytes_written"] == 512);
    CHECK(metrics["disks"][0].contains("errors"));
    CHECK(metrics["last_capture_stall_us"] == 567);
    CHECK(handle_request(vm, "PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})").status == 204);
}

TEST_CASE("metrics before any capture show a null stall")
{
    fake::FakeController vm;
    auto metrics = json::parse(handle_request(vm, "GET", "/metrics", "").body);
    CHECK(metrics["disks"].empty());
    CHECK(metrics["last_capture_stall_us"].is_null());
}

TEST_CASE("pre-boot requests after InstanceStart and post-boot requests before it get 400")
{
    fake::FakeController vm;
    for (auto const& [method, target, body] : std::vector<std::tuple<char const*, char const*, char const*>> {
             { "PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})" },
             { "PATCH", "/vm", R"({"state": "Paused"})" },
             { "PUT", "/snapshot/disks", R"({"snapshot_name": "s"})" },
             { "PUT", "/machine-images", R"({"name": "m"})" } }) {
        auto reply = handle_request(vm, method, target, body);
        CHECK(reply.status == 400);
        CHECK(fault_of(reply) == not_supported_before_start);
    }
    configure(vm);
    REQUIRE(handle_request(vm, "PUT", "/actions", R"({"action_type": "InstanceStart"})").status == 204);
    auto const calls_before = vm.calls().size();
    for (auto const& [target, body] : std::vector<std::pair<char const*, char const*>> {
             { "/boot-source", R"({"kernel_image_path": "/k"})" },
             { "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})" },
             { "/drives/x", R"({"drive_id": "x", "path_on_host": "/x", "is_root_device": false})" },
             { "/actions", R"({"action_type": "InstanceStart"})" } }) {
        auto reply = handle_request(vm, "PUT", target, body);
        CHECK(reply.status == 400);
        CHECK(fault_of(reply) == not_supported_after_start);
    }
    CHECK(vm.calls().size() == calls_before); // none reached the controller
    // A malformed request is refused for its body, whatever the state.
    CHECK(fault_of(handle_request(vm, "PUT", "/machine-config", "{")).get<std::string>().find("not valid JSON") != std::string::npos);
}

TEST_CASE("controller errors map to statuses and fault messages")
{
    fake::FakeController vm;
    struct Case {
        ErrorKind kind;
        unsigned status;
    };
    for (auto const c : { Case { ErrorKind::Usage, 400 }, Case { ErrorKind::BadInput, 400 }, Case { ErrorKind::Unsupported, 400 },
             Case { ErrorKind::NotFound, 404 }, Case { ErrorKind::Exists, 409 }, Case { ErrorKind::Busy, 409 },
             Case { ErrorKind::Io, 500 }, Case { ErrorKind::Internal, 500 }, Case { ErrorKind::Permission, 500 } }) {
        vm.fail_next(make_error(c.kind, "it went wrong"));
        auto reply = handle_request(vm, "PUT", "/boot-source", R"({"kernel_image_path": "/k"})");
        CHECK(reply.status == c.status);
        CHECK(fault_of(reply) == "it went wrong");
    }
    // Every PUT above failed, so nothing is configured: the fake refuses to start and
    // the VM stays Not started.
    auto start = handle_request(vm, "PUT", "/actions", R"({"action_type": "InstanceStart"})");
    CHECK(start.status == 400);
    CHECK(fault_of(start) == "Cannot start microvm without kernel configuration.");
    CHECK(json::parse(handle_request(vm, "GET", "/", "").body)["state"] == "Not started");
}

TEST_CASE("unknown paths and bad bodies never reach the controller")
{
    fake::FakeController vm;
    auto reply = handle_request(vm, "GET", "/nope", "");
    CHECK(reply.status == 400);
    CHECK(fault_of(reply) == "Invalid request method and/or path: GET /nope.");
    CHECK(handle_request(vm, "PUT", "/drives/a", R"({"drive_id": "a"})").status == 400);
    CHECK(handle_request(vm, "PUT", "/machine-config", R"({"vcpu_count": 300, "mem_size_mib": 128})").status == 400);
    // Invalid UTF-8 echoed from the target still makes valid JSON.
    auto weird = handle_request(vm, "GET", "/\xff\xfe", "");
    CHECK(weird.status == 400);
    CHECK_NOTHROW(json::parse(weird.body));
    CHECK(vm.calls().empty());
}

TEST_CASE("PUT /agent: the reply on 200, an agent's refusal as 400, a timeout as 504")
{
    fake::FakeController controller;
    controller.set_state(VmState::Running);
    auto ping = handle_request(controller, "PUT", "/agent", R"({"cmd": "ping"})");
    CHECK(ping.status == 200);
    CHECK(ping.body.find("\"agent\":\"fake\"") != std::string::npos);
    auto thaw = handle_request(controller, "PUT", "/agent", R"({"cmd": "thaw"})");
    CHECK(thaw.status == 400);
    CHECK(thaw.body.find("not frozen") != std::string::npos);
    controller.fail_next(make_error(ErrorKind::Timeout, "the guest agent did not answer"));
    auto late = handle_request(controller, "PUT", "/agent", R"({"cmd": "ping"})");
    CHECK(late.status == 504);
    CHECK(late.body.find("did not answer") != std::string::npos);
    controller.set_state(VmState::NotStarted);
    CHECK(handle_request(controller, "PUT", "/agent", R"({"cmd": "ping"})").status == 400);
}

TEST_CASE("metrics show boot_complete_us (null until it came) and guest_flush in capture replies")
{
    fake::FakeController controller;
    controller.set_state(VmState::Running);
    auto metrics = handle_request(controller, "GET", "/metrics", "");
    CHECK(metrics.body.find("\"boot_complete_us\":null") != std::string::npos);
    auto image = handle_request(controller, "PUT", "/machine-images", R"({"name": "m", "guest_flush": true})");
    CHECK(image.status == 200);
    CHECK(image.body.find("\"guest_flush\":\"not-quiesced: no agent in the fake\"") != std::string::npos);
    auto plain = handle_request(controller, "PUT", "/machine-images", R"({"name": "n"})");
    CHECK(plain.body.find("guest_flush") == std::string::npos);
}

TEST_CASE("GET /vm/config shows a network interface's rate limiters, and the entry replays")
{
    fake::FakeController vm;
    auto r = handle_request(vm, "PUT", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 1000}},
            "tx_rate_limiter": {"ops": {"size": 100, "one_time_burst": 5, "refill_time": 100}}})");
    REQUIRE(r.status == 204);
    REQUIRE(handle_request(vm, "PUT", "/network-interfaces/eth1", R"({"iface_id": "eth1", "host_dev_name": "tap1"})").status == 204);
    auto config = json::parse(handle_request(vm, "GET", "/vm/config", "").body);
    REQUIRE(config["network-interfaces"].size() == 2);
    auto const& eth0 = config["network-interfaces"][0];
    CHECK(eth0["rx_rate_limiter"] == json { { "bandwidth", { { "size", 1048576 }, { "one_time_burst", 0 }, { "refill_time", 1000 } } } });
    CHECK(eth0["tx_rate_limiter"] == json { { "ops", { { "size", 100 }, { "one_time_burst", 5 }, { "refill_time", 100 } } } });
    CHECK(config["network-interfaces"][1].count("rx_rate_limiter") == 0); // unlimited: no key
    CHECK(handle_request(vm, "PUT", "/network-interfaces/eth0", eth0.dump()).status == 204);
    CHECK(json::parse(handle_request(vm, "GET", "/vm/config", "").body)["network-interfaces"][0] == eth0);
}

TEST_CASE("the metadata service's configuration: before boot only, shown in GET /vm/config")
{
    fake::FakeController vm;
    CHECK(json::parse(handle_request(vm, "GET", "/vm/config", "").body).count("mmds-config") == 0);
    auto r = handle_request(vm, "PUT", "/mmds/config", R"({"network_interfaces": ["eth0"], "version": "V2"})");
    CHECK(r.status == 204);
    auto config = json::parse(handle_request(vm, "GET", "/vm/config", "").body);
    CHECK(config["mmds-config"] == json { { "network_interfaces", { "eth0" } }, { "version", "V2" }, { "ipv4_address", "169.254.169.254" } });
    // A controller without a data store refuses the data requests.
    CHECK(handle_request(vm, "GET", "/mmds", "").status == 400);
    vm.set_state(VmState::Running);
    r = handle_request(vm, "PUT", "/mmds/config", R"({"network_interfaces": ["eth0"]})");
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["fault_message"] == not_supported_after_start);
}
