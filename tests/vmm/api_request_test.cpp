// The API request parser (vmm/api/request.h): every endpoint with good and bad
// bodies, unknown paths and methods, names, labels and limits.
#include "vmm/api/request.h"

#include <doctest/doctest.h>

#include <string>

using namespace strata;
using namespace strata::api;

namespace {

// Parses and expects a failure of `kind` whose message contains `needle`.
void expect_error(std::string_view method, std::string_view target, std::string_view body, std::string_view needle,
    ErrorKind kind = ErrorKind::Usage)
{
    auto r = parse_request(method, target, body);
    INFO(method, " ", target, " ", body);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == kind);
    INFO("message: ", r.error().message);
    CHECK(r.error().message.find(needle) != std::string::npos);
}

template<typename T>
T expect_ok(std::string_view method, std::string_view target, std::string_view body)
{
    auto r = parse_request(method, target, body);
    INFO(method, " ", target, " ", body, " -> ", r ? std::string("ok") : r.error().message);
    REQUIRE(r.has_value());
    REQUIRE(std::holds_alternative<T>(r.value()));
    return std::get<T>(r.value());
}

} // namespace

TEST_CASE("GET endpoints parse and refuse bodies")
{
    expect_ok<GetInstanceInfo>("GET", "/", "");
    expect_ok<GetVmConfig>("GET", "/vm/config", "");
    expect_ok<GetMetrics>("GET", "/metrics", "");
    expect_error("GET", "/", "{}", "GET request cannot have a body");
    CHECK(phase_of(GetInstanceInfo {}) == Phase::Any);
}

TEST_CASE("unknown paths and methods get Firecracker's message")
{
    expect_error("GET", "/nope", "", "Invalid request method and/or path: GET /nope.");
    expect_error("PUT", "/vm", "{\"state\":\"Paused\"}", "Invalid request method and/or path: PUT /vm.");
    expect_error("DELETE", "/drives/a", "", "Invalid request method and/or path");
    expect_error("put", "/actions", "{\"action_type\":\"InstanceStart\"}", "Invalid request method");
    expect_error("GET", "/vm/config/", "", "Invalid request method");
    expect_error("GET", "/?x=1", "", "Invalid request method");
    expect_error("PUT", "/drives/", "{}", "Invalid request method");
    expect_error("PUT", "/drives/a/b", "{}", "Invalid request method");
    // Control characters from the target are not echoed raw.
    auto r = parse_request("GET", std::string("/a\x01\n", 4), "");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find('\n') == std::string::npos);
}

TEST_CASE("bodies: empty, malformed, not an object, too large")
{
    expect_error("PUT", "/actions", "", "The request body is empty");
    expect_error("PUT", "/actions", "{\"action_type\": ", "not valid JSON");
    expect_error("PUT", "/actions", "{\"action_type\": \"InstanceStart\"} trailing", "not valid JSON");
    expect_error("PUT", "/actions", "\"InstanceStart\"", "expected a JSON object");
    expect_error("PUT", "/actions", "[]", "expected a JSON object");
    expect_error("PUT", "/actions", "{\"action_type\": \"\xff\xfe\"}", "not valid JSON"); // invalid UTF-8
    std::string big = "{\"action_type\": \"" + std::string(max_body_bytes, 'a') + "\"}";
    expect_error("PUT", "/actions", big, "larger than");
}

TEST_CASE("PUT /boot-source")
{
    auto k = expect_ok<BootSource>("PUT", "/boot-source", R"({"kernel_image_path": "/k", "initrd_path": "/i", "boot_args": "console=ttyS0"})");
    CHECK(k.kernel_image_path == "/k");
    CHECK(k.firmware_path.empty());
    CHECK(k.initrd_path == "/i");
    CHECK(k.boot_args == "console=ttyS0");
    auto f = expect_ok<BootSource>("PUT", "/boot-source", R"({"firmware_path": "/fw.elf", "initrd_path": null})");
    CHECK(f.firmware_path == "/fw.elf");
    CHECK(f.initrd_path.empty());
    CHECK(phase_of(f) == Phase::PreBoot);

    expect_error("PUT", "/boot-source", R"({})", "Exactly one of `kernel_image_path` and `firmware_path`");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": "/k", "firmware_path": "/f"})", "Exactly one");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": 5})", "invalid type for `kernel_image_path`: integer `5`, expected a string");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": "/k", "kernel": "/k"})", "unknown field `kernel`, expected one of");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": ""})", "`kernel_image_path` is empty");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": "/k\u0000/x"})", "control character");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": "/k", "boot_args": "a\nb"})", "control character");
    expect_error("PUT", "/boot-source", R"({"kernel_image_path": "/k", "initrd_path": ""})", "`initrd_path` is empty");
    std::string long_path = R"({"firmware_path": "/)" + std::string(max_path_bytes, 'p') + "\"}";
    expect_error("PUT", "/boot-source", long_path, "longer than");
    std::string long_args = R"({"firmware_path": "/f", "boot_args": ")" + std::string(max_boot_args_bytes + 1, 'a') + "\"}";
    expect_error("PUT", "/boot-source", long_args, "`boot_args` is longer");
}

TEST_CASE("PUT /machine-config")
{
    auto m = expect_ok<MachineSettings>("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256})");
    CHECK(m.vcpu_count == 2);
    CHECK(m.mem_size_mib == 256);
    CHECK(m.cpu_template == CpuTemplate::Host);
    CHECK_FALSE(m.smt);
    CHECK(expect_ok<MachineSettings>("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 8, "cpu_template": "minimal", "smt": false})")
              .cpu_template
        == CpuTemplate::Minimal);
    CHECK(expect_ok<MachineSettings>("PUT", "/machine-config", R"({"vcpu_count": 254, "mem_size_mib": 8, "cpu_template": "None"})").cpu_template
        == CpuTemplate::Host);

    expect_error("PUT", "/machine-config", R"({"mem_size_mib": 256})", "missing field `vcpu_count`");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 1})", "missing field `mem_size_mib`");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 0, "mem_size_mib": 256})", "vCPU number is invalid");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 255, "mem_size_mib": 256})", "vCPU number is invalid");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": -1, "mem_size_mib": 256})", "expected an unsigned integer");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 1.0, "mem_size_mib": 256})", "floating point number, expected an unsigned integer");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": "1", "mem_size_mib": 256})", "string \"1\"");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 7})", "memory size (MiB) is invalid");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 18446744073709551615})", "memory size (MiB) is invalid");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 99999999999999999999999})", "floating point"); // out of u64
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64, "cpu_template": "C3"})", "unknown variant `C3`");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64, "smt": true})", "multithreading", ErrorKind::Unsupported);
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64, "track_dirty_pages": 1})", "track_dirty_pages");
    expect_error("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64, "huge_pages": "2M"})", "unknown field `huge_pages`");
}

TEST_CASE("PUT /drives/{id}")
{
    auto d = expect_ok<DriveConfig>("PUT", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/d.img", "is_root_device": true})");
    CHECK(d.drive_id == "rootfs");
    CHECK(d.path_on_host == "/d.img");
    CHECK(d.disk_name.empty());
    CHECK(d.is_root_device);
    CHECK_FALSE(d.is_read_only);
    CHECK(d.cache_type == CacheType::Unsafe);
    CHECK_FALSE(d.scratch);
    CHECK(phase_of(d) == Phase::PreBoot);
    auto s = expect_ok<DriveConfig>("PUT", "/drives/data-1.x",
        R"({"drive_id": "data-1.x", "disk_name": "data", "is_root_device": false, "is_read_only": true, "cache_type": "Writeback", "scratch": true})");
    CHECK(s.disk_name == "data");
    CHECK(s.is_read_only);
    CHECK(s.cache_type == CacheType::Writeback);
    CHECK(s.scratch);

    expect_error("PUT", "/drives/a", R"({"drive_id": "b", "path_on_host": "/d", "is_root_device": false})", "The id from the path does not match");
    expect_error("PUT", "/drives/a", R"({"path_on_host": "/d", "is_root_device": false})", "missing field `drive_id`");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d"})", "missing field `is_root_device`");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "is_root_device": false})", "Exactly one of `path_on_host` and `disk_name`");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "disk_name": "x", "is_root_device": false})", "Exactly one");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "disk_name": "../x", "is_root_device": false})", "'/'");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "disk_name": "..", "is_root_device": false})", "'..'");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": "yes"})", "expected a boolean");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "cache_type": "None"})", "unknown variant `None`");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "io_engine": "Async"})", "unknown field `io_engine`");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": true, "scratch": true})", "cannot be a scratch");
    expect_error("PUT", "/drives/a%2Fb", R"({})", "API Resource IDs");
    expect_error("PUT", "/drives/..", R"({})", "API Resource IDs");
    expect_error("PUT", "/drives/" + std::string(65, 'a'), R"({})", "API Resource IDs");
}

TEST_CASE("rate_limiter on PUT /drives/{id} and PATCH /drives/{id}")
{
    auto d = expect_ok<DriveConfig>("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false,
        "rate_limiter": {"bandwidth": {"size": 1048576, "one_time_burst": 4096, "refill_time": 100}, "ops": {"size": 50, "refill_time": 100}}})");
    CHECK(d.rate_limiter.bandwidth == strata::TokenBucketConfig { 1048576, 4096, 100 });
    CHECK(d.rate_limiter.ops == strata::TokenBucketConfig { 50, 0, 100 });
    auto none = expect_ok<DriveConfig>("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false})");
    CHECK(none.rate_limiter.unlimited());

    auto u = expect_ok<DriveUpdate>("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {"ops": {"size": 5, "refill_time": 1000}}})");
    CHECK(u.drive_id == "a");
    CHECK(u.rate_limiter.bandwidth.size == 0);
    CHECK(u.rate_limiter.ops == strata::TokenBucketConfig { 5, 0, 1000 });
    CHECK(phase_of(u) == Phase::Any);
    // An empty rate_limiter lifts the limit.
    CHECK(expect_ok<DriveUpdate>("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {}})").rate_limiter.unlimited());

    expect_error("PATCH", "/drives/a", R"({"drive_id": "b", "rate_limiter": {}})", "The id from the path does not match");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a"})", "missing field `rate_limiter`");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {}, "path_on_host": "/x"})", "unknown field `path_on_host`");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {"ops": {"size": 5}}})", "missing field `refill_time`");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {"ops": {"size": 5, "refill_time": 0}}})", "refill_time of at least 1 ms");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {"ops": {"size": -5, "refill_time": 1}}})", "expected an unsigned integer");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {"iops": 5}})", "unknown field `iops`");
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": 5})", "expected an object");
    expect_error("PATCH", "/drives/a/b", R"({"drive_id": "a", "rate_limiter": {}})", "Invalid request method");
}

TEST_CASE("rate_limit_group on PUT /drives/{id}")
{
    auto d = expect_ok<DriveConfig>("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false,
        "rate_limit_group": "shared.1", "rate_limiter": {"ops": {"size": 50, "refill_time": 100}}})");
    CHECK(d.rate_limit_group == "shared.1");
    CHECK(d.rate_limiter.ops == strata::TokenBucketConfig { 50, 0, 100 });
    CHECK(expect_ok<DriveConfig>("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false})").rate_limit_group.empty());
    CHECK(expect_ok<DriveConfig>("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false,
        "rate_limit_group": null})").rate_limit_group.empty());
    for (char const* bad : { R"("")", R"("a/b")", R"("..")", R"("has space")", R"("123456789012345678901")", R"("a\u0000b")" })
        expect_error("PUT", "/drives/a", std::string(R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "rate_limit_group": )") + bad + "}",
            "`rate_limit_group`");
    expect_error("PUT", "/drives/a", R"({"drive_id": "a", "path_on_host": "/d", "is_root_device": false, "rate_limit_group": 5})", "expected a string");
    // PATCH changes the limit, never the group.
    expect_error("PATCH", "/drives/a", R"({"drive_id": "a", "rate_limiter": {}, "rate_limit_group": "g"})", "unknown field `rate_limit_group`");
}

TEST_CASE("PUT /actions and PATCH /vm")
{
    CHECK(expect_ok<InstanceAction>("PUT", "/actions", R"({"action_type": "InstanceStart"})").type == ActionType::InstanceStart);
    auto c = expect_ok<InstanceAction>("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})");
    CHECK(c.type == ActionType::SendCtrlAltDel);
    CHECK(phase_of(InstanceAction { ActionType::InstanceStart }) == Phase::PreBoot);
    CHECK(phase_of(c) == Phase::PostBoot);
    expect_error("PUT", "/actions", R"({})", "missing field `action_type`");
    expect_error("PUT", "/actions", R"({"action_type": "Reboot"})", "unknown variant `Reboot`");
    expect_error("PUT", "/actions", R"({"action_type": "FlushMetrics"})", "GET /metrics", ErrorKind::Unsupported);
    expect_error("PUT", "/actions", R"({"action_type": "InstanceStart", "x": 1})", "unknown field `x`");

    CHECK(expect_ok<VmStateChange>("PATCH", "/vm", R"({"state": "Paused"})").pause);
    auto r = expect_ok<VmStateChange>("PATCH", "/vm", R"({"state": "Resumed"})");
    CHECK_FALSE(r.pause);
    CHECK(phase_of(r) == Phase::PostBoot);
    expect_error("PATCH", "/vm", R"({"state": "paused"})", "unknown variant `paused`");
    expect_error("PATCH", "/vm", R"({"state": true})", "expected a string");
    expect_error("PATCH", "/vm", R"({})", "missing field `state`");
}

TEST_CASE("PUT /snapshot/disks")
{
    auto s = expect_ok<SnapshotDisksRequest>("PUT", "/snapshot/disks", R"({"snapshot_name": "before-upgrade"})");
    CHECK(s.snapshot_name == "before-upgrade");
    CHECK(phase_of(s) == Phase::PostBoot);
    expect_error("PUT", "/snapshot/disks", R"({})", "missing field `snapshot_name`");
    expect_error("PUT", "/snapshot/disks", R"({"snapshot_name": ""})", "is empty");
    expect_error("PUT", "/snapshot/disks", R"({"snapshot_name": "a/b"})", "'/'");
    expect_error("PUT", "/snapshot/disks", R"({"snapshot_name": "a..b"})", "'..'");
    expect_error("PUT", "/snapshot/disks", R"({"snapshot_name": "."})", "'.'");
    expect_error("PUT", "/snapshot/disks", R"({"snapshot_name": "a\tb"})", "control character");
    expect_error("PUT", "/snapshot/disks", R"({"snapshot_name": ")" + std::string(65, 'n') + "\"}", "longer than 64");
    expect_ok<SnapshotDisksRequest>("PUT", "/snapshot/disks", R"({"snapshot_name": ")" + std::string(64, 'n') + "\"}");
}

TEST_CASE("PUT /machine-images")
{
    auto m = expect_ok<MachineImageRequest>("PUT", "/machine-images",
        R"({"name": "web-1", "description": "Web server, 2024", "labels": {"env": "prod", "tier": ""}, "guest_flush": true})");
    CHECK(m.name == "web-1");
    CHECK(m.description == "Web server, 2024");
    CHECK(m.labels.size() == 2);
    CHECK(m.labels.at("env") == "prod");
    CHECK(m.guest_flush);
    CHECK(phase_of(m) == Phase::PostBoot);
    auto minimal = expect_ok<MachineImageRequest>("PUT", "/machine-images", R"({"name": "x"})");
    CHECK(minimal.labels.empty());
    CHECK_FALSE(minimal.guest_flush);

    expect_error("PUT", "/machine-images", R"({"description": "d"})", "missing field `name`");
    expect_error("PUT", "/machine-images", R"({"name": "a/b"})", "'/'");
    expect_error("PUT", "/machine-images", R"({"name": "x", "labels": ["a"]})", "expected a map of strings");
    expect_error("PUT", "/machine-images", R"({"name": "x", "labels": {"env": 1}})", "invalid type for `labels.env`");
    expect_error("PUT", "/machine-images", R"({"name": "x", "labels": {"Env": "a"}})", "Label key 'Env'");
    expect_error("PUT", "/machine-images", R"({"name": "x", "labels": {"1a": "a"}})", "Label key");
    expect_error("PUT", "/machine-images", R"({"name": "x", "labels": {"env": "Prod"}})", "Label value 'Prod'");
    expect_error("PUT", "/machine-images", R"({"name": "x", "description": "a\u0007"})", "control character");
    expect_error("PUT", "/machine-images", R"({"name": "x", "guest_flush": 1})", "expected a boolean");
    expect_error("PUT", "/machine-images", R"({"name": "x", "source_vm": "y"})", "unknown field `source_vm`");
    std::string many = R"({"name": "x", "labels": {)";
    for (int i = 0; i <= static_cast<int>(max_labels); ++i)
        many += std::string(i ? "," : "") + "\"k" + std::to_string(i) + "\": \"v\"";
    expect_error("PUT", "/machine-images", many + "}}", "At most 64 labels");
}

TEST_CASE("names, drive IDs and labels")
{
    CHECK(check_name("n", "a.b-c_d").has_value());
    CHECK_FALSE(check_name("n", "").has_value());
    CHECK_FALSE(check_name("n", "..").has_value());
    CHECK_FALSE(check_name("n", std::string("a\0b", 3)).has_value());
    CHECK_FALSE(check_name("n", "a\x7f").has_value());
    CHECK(check_drive_id("root_fs-1.0").has_value());
    CHECK_FALSE(check_drive_id("a b").has_value());
    CHECK_FALSE(check_drive_id(".").has_value());
    CHECK(check_label("env", "").has_value());
    CHECK_FALSE(check_label("", "x").has_value());
    CHECK_FALSE(check_label(std::string(64, 'a'), "x").has_value());
    CHECK_FALSE(check_label("a", std::string(64, 'a')).has_value());
}

TEST_CASE("PUT /agent")
{
    auto ping = expect_ok<AgentCommand>("PUT", "/agent", R"({"cmd": "ping"})");
    CHECK(ping.cmd == "ping");
    CHECK(ping.wait_ms == 2000);
    CHECK_FALSE(ping.timeout_s);
    auto freeze = expect_ok<AgentCommand>("PUT", "/agent", R"({"cmd": "freeze", "timeout_s": 30, "wait_ms": 500})");
    CHECK(freeze.timeout_s == 30u);
    CHECK(freeze.wait_ms == 500);
    expect_ok<AgentCommand>("PUT", "/agent", R"({"cmd": "generalize"})");
    expect_error("PUT", "/agent", R"({})", "missing field `cmd`");
    expect_error("PUT", "/agent", R"({"cmd": "reboot"})", "unknown variant");
    expect_error("PUT", "/agent", R"({"cmd": "ping", "timeout_s": 5})", "`freeze` command only");
    expect_error("PUT", "/agent", R"({"cmd": "freeze", "timeout_s": 301})", "between 1 and 300");
    expect_error("PUT", "/agent", R"({"cmd": "ping", "wait_ms": 0})", "between 1 and 60000");
    expect_error("PUT", "/agent", R"({"cmd": "ping", "extra": 1})", "unknown field");
    expect_error("PUT", "/agent", R"({"cmd": 1})", "invalid type");
    CHECK(phase_of(ApiRequest { AgentCommand {} }) == Phase::PostBoot);
}

TEST_CASE("PUT /machine-images guest_flush_wait_ms")
{
    auto m = expect_ok<MachineImageRequest>("PUT", "/machine-images", R"({"name": "x", "guest_flush": true, "guest_flush_wait_ms": 500})");
    CHECK(m.guest_flush);
    CHECK(m.guest_flush_wait_ms == 500);
    expect_error("PUT", "/machine-images", R"({"name": "x", "guest_flush_wait_ms": 500})", "goes with `guest_flush`");
    expect_error("PUT", "/machine-images", R"({"name": "x", "guest_flush": true, "guest_flush_wait_ms": 0})", "between 1 and 60000");
}

TEST_CASE("PUT /vm/suspend")
{
    auto s = expect_ok<SuspendRequest>("PUT", "/vm/suspend", "");
    CHECK(phase_of(s) == Phase::PostBoot);
    expect_ok<SuspendRequest>("PUT", "/vm/suspend", "{}");
    expect_error("PUT", "/vm/suspend", R"({"now": true})", "now");
    expect_error("PUT", "/vm/suspend", "[]", "");
    expect_error("GET", "/vm/suspend", "", "");
}

TEST_CASE("PUT /network-interfaces/{id}")
{
    auto n = expect_ok<NetworkInterfaceConfig>("PUT", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "02:00:00:00:00:01"})");
    CHECK(n.iface_id == "eth0");
    CHECK(n.host_dev_name == "tap0");
    CHECK(n.guest_mac == "02:00:00:00:00:01");
    CHECK(phase_of(ApiRequest { n }) == Phase::PreBoot);
    CHECK(expect_ok<NetworkInterfaceConfig>("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0"})").guest_mac.empty());
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth1", "host_dev_name": "tap0"})", "does not match");
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0"})", "missing field `host_dev_name`");
    expect_error("PUT", "/network-interfaces/eth0", R"({"host_dev_name": "tap0"})", "missing field `iface_id`");
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": 7})", "host_dev_name");
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0", "colour": 1})", "unknown field");
    expect_error("PUT", "/network-interfaces/", "{}", "Invalid request method");
    expect_error("PUT", "/network-interfaces/a/b", "{}", "Invalid request method");
    auto limited = expect_ok<NetworkInterfaceConfig>("PUT", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}},
            "tx_rate_limiter": {"ops": {"size": 10, "one_time_burst": 5, "refill_time": 1000}}})");
    CHECK(limited.rx_rate_limiter.bandwidth == TokenBucketConfig { 1000, 0, 100 });
    CHECK(limited.tx_rate_limiter.ops == TokenBucketConfig { 10, 5, 1000 });
    CHECK(limited.tx_rate_limiter.bandwidth.size == 0);
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwidth": {"size": 10}}})",
        "refill_time");
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwith": {}}})",
        "unknown field");
    expect_error("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"ops": {"size": 10, "refill_time": 0}}})",
        "refill_time");
}

TEST_CASE("PATCH /network-interfaces/{id}")
{
    auto u = expect_ok<NetworkInterfaceUpdate>("PATCH", "/network-interfaces/eth0",
        R"({"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 1000000, "refill_time": 1000}}})");
    CHECK(!u.rx_rate_limiter);
    REQUIRE(u.tx_rate_limiter);
    CHECK(u.tx_rate_limiter->bandwidth.size == 1000000);
    CHECK(phase_of(ApiRequest { u }) == Phase::Any);
    expect_error("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "host_dev_name": "tap1"})", "unknown field");
    expect_error("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth9"})", "does not match");
}

TEST_CASE("GET, PUT and PATCH /mmds, PUT /mmds/config")
{
    expect_ok<MmdsGet>("GET", "/mmds", "");
    expect_error("GET", "/mmds", "{}", "cannot have a body");
    CHECK(expect_ok<MmdsPut>("PUT", "/mmds", R"({"latest": {"a": "b"}})").json == R"({"latest":{"a":"b"}})");
    CHECK(expect_ok<MmdsPatch>("PATCH", "/mmds", R"({"latest": null})").json == R"({"latest":null})");
    CHECK(phase_of(ApiRequest { MmdsPut {} }) == Phase::Any);
    expect_error("PUT", "/mmds", "[1]", "must be a JSON object");
    expect_error("PUT", "/mmds", "{broken", "");
    expect_error("DELETE", "/mmds", "", "Invalid request method");

    auto c = expect_ok<MmdsConfigRequest>("PUT", "/mmds/config", R"({"network_interfaces": ["eth0"], "version": "V2", "ipv4_address": "169.254.170.2"})");
    CHECK(c.network_interfaces == std::vector<std::string> { "eth0" });
    CHECK(c.v2);
    CHECK(c.ipv4 == 0xa9feaa02);
    CHECK(phase_of(ApiRequest { c }) == Phase::PreBoot);
    c = expect_ok<MmdsConfigRequest>("PUT", "/mmds/config", R"({"network_interfaces": ["eth0"]})");
    CHECK_FALSE(c.v2);
    CHECK(c.ipv4 == 0xa9fea9fe);
    expect_error("PUT", "/mmds/config", R"({"version": "V2"})", "missing field `network_interfaces`");
    expect_error("PUT", "/mmds/config", R"({"network_interfaces": []})", "non-empty array");
    expect_error("PUT", "/mmds/config", R"({"network_interfaces": [1]})", "non-empty array");
    expect_error("PUT", "/mmds/config", R"({"network_interfaces": ["a/b"]})", "alphanumeric");
    expect_error("PUT", "/mmds/config", R"({"network_interfaces": ["eth0"], "version": "V3"})", "V1");
    for (char const* ip : { "10.0.0.1", "169.254.0.1", "169.254.255.1", "169.254.1", "169.254.1.256", "169.254.1.1.1", "169.254.01x.1" })
        expect_error("PUT", "/mmds/config", std::string(R"({"network_interfaces": ["eth0"], "ipv4_address": ")") + ip + "\"}", "");
    expect_error("PUT", "/mmds/config", R"({"network_interfaces": ["eth0"], "colour": "red"})", "unknown field");
}

TEST_CASE("PUT /snapshot/create and PUT /snapshot/load (Firecracker's bodies)")
{
    auto full = expect_ok<SnapshotCreateRequest>("PUT", "/snapshot/create", R"({"snapshot_path": "s", "mem_file_path": "m"})");
    CHECK_FALSE(full.diff);
    CHECK(full.snapshot_path == "s");
    CHECK(full.mem_file_path == "m");
    CHECK(expect_ok<SnapshotCreateRequest>("PUT", "/snapshot/create", R"({"snapshot_type": "Diff", "snapshot_path": "s", "mem_file_path": "m"})").diff);
    CHECK_FALSE(expect_ok<SnapshotCreateRequest>("PUT", "/snapshot/create", R"({"snapshot_type": "Full", "snapshot_path": "s", "mem_file_path": "m"})").diff);
    expect_error("PUT", "/snapshot/create", R"({"snapshot_type": "Half", "snapshot_path": "s", "mem_file_path": "m"})", "snapshot_type");
    expect_error("PUT", "/snapshot/create", R"({"snapshot_path": "s"})", "mem_file_path");
    expect_error("PUT", "/snapshot/create", R"({"snapshot_path": "", "mem_file_path": "m"})", "snapshot_path");
    expect_error("PUT", "/snapshot/create", R"({"snapshot_path": "s", "mem_file_path": "m", "version": "1.0.0"})", "version", ErrorKind::Unsupported);
    expect_error("PUT", "/snapshot/create", R"({"snapshot_path": "s", "mem_file_path": "m", "extra": 1})", "extra");

    auto load = expect_ok<SnapshotLoadRequest>("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m"})");
    CHECK(load.mem_file_path == "m");
    CHECK_FALSE(load.resume_vm);
    CHECK_FALSE(load.enable_diff_snapshots);
    auto backend = expect_ok<SnapshotLoadRequest>("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_backend": {"backend_type": "File", "backend_path": "b"}, "enable_diff_snapshots": true, "resume_vm": true})");
    CHECK(backend.mem_file_path == "b");
    CHECK(backend.resume_vm);
    CHECK(backend.enable_diff_snapshots);
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s"})", "Exactly one of `mem_file_path` and `mem_backend`");
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m", "mem_backend": {"backend_type": "File", "backend_path": "b"}})",
        "Exactly one");
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_backend": {"backend_type": "Uffd", "backend_path": "b"}})", "Uffd",
        ErrorKind::Unsupported);
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_backend": {"backend_type": "File"}})", "backend_path");
    expect_error("PUT", "/snapshot/load", R"({"mem_file_path": "m"})", "snapshot_path");
    auto overrides = expect_ok<SnapshotLoadRequest>("PUT", "/snapshot/load",
        R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap7"}]})");
    REQUIRE(overrides.network_overrides.size() == 1);
    CHECK(overrides.network_overrides[0].iface_id == "eth0");
    CHECK(overrides.network_overrides[0].host_dev_name == "tap7");
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": {"iface_id": "eth0"}})", "network_overrides");
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": [{"iface_id": "eth0"}]})", "host_dev_name");
    expect_error("PUT", "/snapshot/load", R"({"snapshot_path": "s", "mem_file_path": "m", "network_overrides": [{"iface_id": "eth0", "host_dev_name": "t", "x": 1}]})", "x");

    CHECK(phase_of(ApiRequest { SnapshotCreateRequest {} }) == Phase::PostBoot);
    CHECK(phase_of(ApiRequest { SnapshotLoadRequest {} }) == Phase::PreBoot);
    CHECK(expect_ok<MachineSettings>("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64, "track_dirty_pages": true})").track_dirty_pages);
}
