// Disk rate limits (base/rate_limiter.h on virtio-blk) with real I/O: blkbench
// under a bandwidth limit and under an operations limit measures within 10% of
// the limit, and PATCH /drives/{id} changes the limit of a running guest (the
// rate over a measured interval before and after, from GET /metrics). Rates are
// counts of bytes or requests over an interval the guest (blkbench's TSC figure;
// a write phase's without its closing flush, which the limit does not govern)
// or the test (steady_clock around two GET /metrics) measured.
//
// A VM in the store carries its disks' limits in its record (vms create --disk
// ...,bps=, rate limit groups): vms start applies them, measured the same way.
// A snapshot file carries them too: a load into a new VMM has the drives' limits
// and group as PATCH last set them.
//
// Where the disk cannot go much faster than the limit (an emulated machine), the
// limit is lowered to a third of the unlimited rate measured first, so the limit
// is what binds.
#include "tests/support/emulated.h"
#include "tests/support/process.h"
#include "tests/support/strata_home.h"
#include "tests/support/temp_dir.h"
#include "vmm/api/client.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";
std::string const blkbench = STRATA_BUILD_DIR "/firmware/blkbench.elf";

struct Phase {
    double mib { 0 };
    double ms { 0 };
};

// blkbench's "blkbench: read 100 MiB in 1992 ms (50 MiB/s)" lines, by phase. A
// write phase ends with a flush, whose time blkbench also prints apart
// ("..., data 1990120 us, flush 1880 us"): the phase's time is then that of its
// data requests only. A limit governs those (a flush carries no bytes, and is
// one operation of the thousand or more an operations case counts); how long
// the host takes to make the written disk durable is not the limiter's, and
// inside the emulated machine on a loaded host a flush took up to 0.93 s of a
// 4.2 s limited phase.
std::map<std::string, Phase> phases(std::string const& out)
{
    std::map<std::string, Phase> found;
    std::regex line(R"(blkbench: (read|write) (\d+) MiB in (\d+) ms[^\n]*?(?:, data (\d+) us, flush (\d+) us)?\r?\n)");
    for (auto it = std::sregex_iterator(out.begin(), out.end(), line); it != std::sregex_iterator(); ++it) {
        double const ms = (*it)[4].matched ? std::stod((*it)[4]) / 1000.0 : std::stod((*it)[3]);
        found[(*it)[1]] = Phase { std::stod((*it)[2]), ms };
    }
    return found;
}

std::map<std::string, Phase> bench(std::string const& disk, std::string const& limit, std::string const& cmdline)
{
    strata::test::ProcessOptions options;
    options.argv = { strata_bin, "run", "--firmware", blkbench, "--disk", "path=" + disk + ",format=raw" + limit, "--cmdline", cmdline };
    options.timeout = 120s;
    auto r = strata::test::run_process(options);
    REQUIRE(r.has_value());
    INFO(strata::test::join_argv(options.argv), "\n", r.value().describe(), "\n", r.value().out);
    REQUIRE(r.value().exit_code == 0);
    auto found = phases(r.value().out);
    REQUIRE(found.count("read") == 1);
    REQUIRE(found.count("write") == 1);
    return found;
}

// The slower phase's rate, in units per second, for `units` per MiB.
double slower_rate(std::map<std::string, Phase> const& p, double units_per_mib)
{
    double rate = 1e18;
    for (auto const& [kind, phase] : p)
        rate = std::min(rate, phase.mib * units_per_mib * 1000.0 / std::max(1.0, phase.ms));
    return rate;
}

std::uint64_t bytes_read(std::string const& socket)
{
    auto r = strata::api::api_request(socket, "GET", "/metrics", {}, 10s);
    REQUIRE(r.has_value());
    REQUIRE(r.value().status == 200);
    return nlohmann::json::parse(r.value().body)["disks"][0]["bytes_read"].get<std::uint64_t>();
}

// Bytes per second read over `interval`, from two GET /metrics.
double measured_rate(std::string const& socket, std::chrono::milliseconds interval)
{
    auto const b0 = bytes_read(socket);
    auto const t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(interval);
    auto const b1 = bytes_read(socket);
    auto const t1 = std::chrono::steady_clock::now();
    return static_cast<double>(b1 - b0) / std::chrono::duration<double>(t1 - t0).count();
}

// Runs blkbench unlimited, then under a limit of `target` (or a quarter of the
// unlimited rate, if lower) and judges each phase: within 10% passes; above
// 110% fails at once (the limiter let too much through); below 90% means the
// disk could not keep up on this (loaded) machine, and the next of three
// attempts measures again with a lower limit.
void check_limit(std::string const& what, double target, double units_per_mib, std::string const& free_cmdline,
    std::function<std::pair<std::string, std::string>(double limit)> const& limited_run)
{
    strata::test::TempDir dir("strata-rate");
    std::string disk = dir.file("disk.raw", 300 << 20);
    bool passed = false;
    for (int attempt = 0; attempt < 3 && !passed; ++attempt) {
        double const free_rate = slower_rate(bench(disk, "", free_cmdline), units_per_mib);
        double const limit = std::floor(std::min(target, free_rate / (4 << attempt)));
        REQUIRE_MESSAGE(limit >= 10, "the disk is too slow here to measure a limit: ", free_rate, " ", what);
        auto [limit_key, cmdline] = limited_run(limit);
        auto limited = bench(disk, limit_key, cmdline);
        passed = true;
        for (auto const& [kind, phase] : limited) {
            double const rate = phase.mib * units_per_mib * 1000.0 / phase.ms;
            MESSAGE("attempt ", attempt + 1, ": unlimited ", free_rate, " ", what, ", limit ", limit, ": ", kind, " ",
                phase.mib * units_per_mib, " in ", phase.ms, " ms = ", rate, " ", what);
            REQUIRE_MESSAGE(rate <= 1.1 * limit, kind, " went ", rate / limit, " times the limit");
            passed = passed && rate >= 0.9 * limit;
        }
    }
    CHECK_MESSAGE(passed, "no attempt measured within 10% of the limit");
}

} // namespace

TEST_CASE("blkbench under a bandwidth limit measures within 10% of it")
{
    // About two seconds' worth at the limit: the first bucket's tenth of a second
    // is 5% of it.
    check_limit("MiB/s", 50, 1.0, "mb=100 mode=both", [](double limit) {
        return std::pair { ",bps=" + std::to_string(static_cast<long>(limit)) + "M",
            "mb=" + std::to_string(static_cast<long>(2 * limit)) + " mode=both" };
    });
}

TEST_CASE("blkbench under an operations limit measures within 10% of it")
{
    // 4 KiB requests, 256 per MiB; about four seconds' worth (at least 1024
    // requests), so the first bucket's tenth of a second is a small part.
    check_limit("IOPS", 500, 256.0, "mb=4 req_kb=4 mode=both", [](double limit) {
        long const mb = std::max(4L, static_cast<long>(4 * limit / 256));
        return std::pair { ",iops=" + std::to_string(static_cast<long>(limit)), "mb=" + std::to_string(mb) + " req_kb=4 mode=both" };
    });
}

TEST_CASE("PATCH /drives/{id} changes a running guest's limit, throttled requests wait and never fail")
{
    strata::test::TempDir dir("strata-rate");
    std::string disk = dir.file("disk.raw", 128 << 20);
    std::string socket = dir.path("api.sock");
    // 10 MiB/s, then 20 MiB/s: 64 KiB requests, so one request is a small part
    // of what an interval counts. blkbench reads 120 MiB in all: it ends a few
    // seconds after the PATCH, or after 12 s if the PATCH changed nothing.
    strata::test::ProcessOptions options;
    options.argv = { strata_bin, "run", "--firmware", blkbench, "--disk", "path=" + disk + ",format=raw,id=d0,bps=10M", "--cmdline",
        "mb=120 req_kb=64 mode=read", "--api-socket", socket };
    options.timeout = 120s;
    strata::Result<strata::test::ProcessResult> result = strata::make_error(strata::ErrorKind::Internal, "not run");
    std::thread runner([&] { result = strata::test::run_process(options); });
    for (int i = 0; i < 100 && !std::filesystem::exists(socket); ++i)
        std::this_thread::sleep_for(50ms);
    // Past the first bucket's burst.
    std::this_thread::sleep_for(300ms);
    double const slow = measured_rate(socket, 2000ms) / (1 << 20);
    auto patched = strata::api::api_request(socket, "PATCH", "/drives/d0",
        R"({"drive_id": "d0", "rate_limiter": {"bandwidth": {"size": 2097152, "refill_time": 100}}})", 10s);
    std::this_thread::sleep_for(300ms);
    double const fast = measured_rate(socket, 2000ms) / (1 << 20);
    auto config = strata::api::api_request(socket, "GET", "/vm/config", {}, 10s);
    runner.join();
    REQUIRE(patched.has_value());
    CHECK(patched.value().status == 204);
    MESSAGE("before: ", slow, " MiB/s; after PATCH to 20 MiB/s: ", fast, " MiB/s");
    CHECK(slow >= 9);
    CHECK(slow <= 11);
    CHECK(fast >= 18);
    CHECK(fast <= 22);
    REQUIRE(config.has_value());
    auto limiter = nlohmann::json::parse(config.value().body)["drives"][0]["rate_limiter"];
    CHECK(limiter["bandwidth"]["size"] == 2097152);
    CHECK(limiter["bandwidth"]["refill_time"] == 100);
    REQUIRE(result.has_value());
    INFO(result.value().describe(), "\n", result.value().out);
    CHECK(result.value().exit_code == 0);
    CHECK(phases(result.value().out).count("read") == 1);
}

namespace {

std::string slurp(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A store VM running blkbench on its first disk (a layer in the store, made with
// the VM): its phases once it stopped.
std::map<std::string, Phase> run_store_vm(strata::test::StrataHome& home, std::string const& vm)
{
    // The serial log goes on across starts: only this run's lines count.
    std::string const serial = home.describe("vms", vm)["serial_log"];
    std::size_t const before = slurp(serial).size();
    home.run({ "vms", "start", vm });
    // While blkbench runs, only its serial log is read: every `strata vms
    // describe` is a process start, which inside the emulated machine took
    // 1.8 s of CPU (3.4 s wall), so polling one each 200 ms kept a process
    // running the whole time on the machine's other CPU (the guest's vCPU
    // holds one): the I/O thread measured was then starved by the test itself.
    // A guest that fails ends without "done": the state is looked at every 10 s.
    auto const end = std::chrono::steady_clock::now() + 150s;
    for (int polls = 1; std::chrono::steady_clock::now() < end && slurp(serial).find("blkbench: done", before) == std::string::npos; ++polls) {
        std::this_thread::sleep_for(200ms);
        if (polls % 50 == 0 && home.describe("vms", vm)["state"] == "stopped")
            break;
    }
    while (std::chrono::steady_clock::now() < end && home.describe("vms", vm)["state"] != "stopped")
        std::this_thread::sleep_for(200ms);
    std::string const whole = slurp(serial);
    std::string const log = whole.size() >= before ? whole.substr(before) : whole;
    INFO(log);
    auto found = phases(log);
    REQUIRE(found.count("read") == 1);
    REQUIRE(found.count("write") == 1);
    return found;
}

} // namespace

// Watched failing once with vm_config.cpp not passing the record's limits to the
// VMM (the created VM ran unlimited: its read phase went 8.6 times the limit).
// The unlimited rate the limit is derived from is that of the same kind of disk
// (a fresh layer in the store, written through the store's engine), measured by
// a VM made the same way without the limit: a raw file's rate says nothing about
// it. Inside the emulated machine a fresh layer took writes at 12-21 MiB/s
// while a raw file took 73-94, so a limit derived from the raw file (50 MiB/s)
// did not bind and the write phase measured the layer (40.3 MiB/s once, failing).
// Requests of 64 KiB keep several to a bucket (a tenth of a second's worth) down
// to the lowest limit taken here, 2 MiB/s: with blkbench's 1 MiB requests a limit
// under 10 MiB/s has a bucket smaller than a request, whose first burst (the
// bucket and one request) is over a tenth of a two-second run.
TEST_CASE("a VM created with a disk limit in a rate limit group runs within 10% of it (vms create/start)")
{
    strata::test::StrataHome home("strata-rate-vm", 180s);
    // `vms start` returns once the VMM's API answers, after the guest started;
    // inside the emulated machine the rest of that command (and any process
    // start there: 1.8 s of CPU for one `vms describe`) overlaps the first
    // seconds of blkbench on the one CPU the guest's spinning vCPU leaves to
    // the VMM's I/O thread. blkbench waits that out before it measures.
    std::string const settle = strata::test::in_emulated_machine() ? " wait_ms=5000" : "";
    bool passed = false;
    for (int attempt = 0; attempt < 3 && !passed; ++attempt) {
        std::string const a = std::to_string(attempt);
        home.run({ "vms", "create", "free" + a, "--firmware", blkbench, "--cmdline", "mb=100 mode=both req_kb=64" + settle, "--disk",
            "size=300M,id=d0,rate_limit_group=shared", "--disk", "size=1M,id=d1,rate_limit_group=shared" });
        home.stop_at_end("free" + a);
        double const free_rate = slower_rate(run_store_vm(home, "free" + a), 1.0);
        double const limit = std::floor(std::min(50.0, free_rate / (4 << attempt)));
        REQUIRE_MESSAGE(limit >= 2, "the disk is too slow here to measure a limit: ", free_rate, " MiB/s");
        std::string const vm = "rl" + a;
        std::string const bps = std::to_string(static_cast<long>(limit)) + "M";
        // blkbench drives d0; the group's limit is given on d1 only, so d0 has it
        // only through the group.
        home.run({ "vms", "create", vm, "--firmware", blkbench, "--cmdline", "mb=" + std::to_string(static_cast<long>(2 * limit)) + " mode=both req_kb=64" + settle,
            "--disk", "size=300M,id=d0,rate_limit_group=shared", "--disk", "size=1M,id=d1,rate_limit_group=shared,bps=" + bps });
        home.stop_at_end(vm);
        auto const record = home.describe("vms", vm);
        REQUIRE(record["disks"].size() == 2);
        CHECK(record["disks"][0]["rate_limit_group"] == "shared");
        CHECK(record["disks"][0]["rate_limiter"] == record["disks"][1]["rate_limiter"]);
        CHECK(record["disks"][0]["rate_limiter"]["bandwidth"]["size"] == (static_cast<long>(limit) << 20) / 10);
        auto const text = home.run({ "vms", "describe", vm }).out;
        CHECK(text.find("rate limit: bw_size=") != std::string::npos);
        CHECK(text.find("rate_limit_group=shared") != std::string::npos);

        // The first run writes the fresh layer (its first writes make the
        // disk's writable top and allocate: inside the emulated machine 12 MiB
        // took 1.8-2.2 s unlimited there, against 0.46 s on the same disk once
        // written), which a run of two seconds' worth at the limit cannot absorb.
        // It must keep under the limit; the second run, over the written disk,
        // is judged both ways.
        for (auto const& [kind, phase] : run_store_vm(home, vm)) {
            double const rate = phase.mib * 1000.0 / phase.ms;
            MESSAGE("attempt ", attempt + 1, ", first run: VM's limit ", limit, ": ", kind, " ", rate, " MiB/s");
            REQUIRE_MESSAGE(rate <= 1.1 * limit, kind, " went ", rate / limit, " times the limit");
        }
        auto const found = run_store_vm(home, vm);
        passed = true;
        for (auto const& [kind, phase] : found) {
            double const rate = phase.mib * 1000.0 / phase.ms;
            MESSAGE("attempt ", attempt + 1, ": unlimited ", free_rate, " MiB/s, VM's limit ", limit, ": ", kind, " ", phase.mib, " MiB in ",
                phase.ms, " ms = ", rate, " MiB/s");
            REQUIRE_MESSAGE(rate <= 1.1 * limit, kind, " went ", rate / limit, " times the limit");
            passed = passed && rate >= 0.9 * limit;
        }
    }
    CHECK_MESSAGE(passed, "no attempt measured within 10% of the limit");
}

namespace {

// An unconfigured `strata vmm --api-socket`, its output in `log`; ended with SIGTERM.
struct ApiVmm {
    std::string socket;
    std::string log;
    pid_t pid { -1 };

    ApiVmm(std::string socket_path, std::string log_path)
        : socket(std::move(socket_path))
        , log(std::move(log_path))
    {
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int const out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            int const in = ::open("/dev/null", O_RDONLY);
            ::dup2(in, 0);
            ::dup2(out, 1);
            ::dup2(out, 2);
            ::execl(strata_bin.c_str(), "strata", "vmm", "--api-socket", socket.c_str(), nullptr);
            ::_exit(127);
        }
        for (int i = 0; i < 400; ++i) {
            auto r = strata::api::api_request(socket, "GET", "/", {}, 1s);
            if (r && r.value().status == 200)
                return;
            std::this_thread::sleep_for(25ms);
        }
        FAIL("the VMM's API never answered: ", slurp(log));
    }
    ~ApiVmm()
    {
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
    }
    // The reply's status (the test fails without a reply).
    unsigned call(std::string const& method, std::string const& target, nlohmann::json const& body = nullptr) const
    {
        auto r = strata::api::api_request(socket, method, target, body.is_null() ? std::string() : body.dump(), 60s);
        REQUIRE_MESSAGE(r.has_value(), r.error().message);
        INFO(method, " ", target, " ", body.dump(), " -> ", r.value().status, " ", r.value().body, "\n", slurp(log));
        return r.value().status;
    }
    nlohmann::json drives() const
    {
        auto r = strata::api::api_request(socket, "GET", "/vm/config", {}, 10s);
        REQUIRE(r.has_value());
        return nlohmann::json::parse(r.value().body)["drives"];
    }
};

} // namespace

// Watched failing with the snapshot file's two drive fields left out: the
// loaded VMM's drives had neither the limit nor the group.
TEST_CASE("a snapshot (PUT /snapshot/create) keeps its drives' limits and group, as PATCH last set them, and a load applies them")
{
    strata::test::TempDir dir("strata-rate-snap");
    std::string const a = dir.file("a.raw", 1 << 20);
    std::string const b = dir.file("b.raw", 1 << 20);
    nlohmann::json const first = { { "ops", { { "size", 100 }, { "one_time_burst", 0 }, { "refill_time", 100 } } } };
    nlohmann::json const patched = { { "bandwidth", { { "size", 2097152 }, { "one_time_burst", 0 }, { "refill_time", 100 } } } };
    std::string const snapshot = dir.path("snap.json");
    std::string const memory = dir.path("snap.mem");
    {
        ApiVmm source(dir.path("a.sock"), dir.path("a.log"));
        REQUIRE(source.call("PUT", "/boot-source", { { "firmware_path", STRATA_BUILD_DIR "/firmware/echo.elf" } }) == 204);
        REQUIRE(source.call("PUT", "/machine-config", { { "vcpu_count", 1 }, { "mem_size_mib", 64 } }) == 204);
        REQUIRE(source.call("PUT", "/drives/a", { { "drive_id", "a" }, { "path_on_host", a }, { "is_root_device", false },
                    { "rate_limit_group", "g" }, { "rate_limiter", first } }) == 204);
        REQUIRE(source.call("PUT", "/drives/b", { { "drive_id", "b" }, { "path_on_host", b }, { "is_root_device", false },
                    { "rate_limit_group", "g" } }) == 204);
        REQUIRE(source.call("PUT", "/actions", { { "action_type", "InstanceStart" } }) == 204);
        REQUIRE(source.call("PATCH", "/vm", { { "state", "Paused" } }) == 204);
        // The group's new limit, through one of its drives.
        REQUIRE(source.call("PATCH", "/drives/b", { { "drive_id", "b" }, { "rate_limiter", patched } }) == 204);
        REQUIRE(source.call("PUT", "/snapshot/create", { { "snapshot_type", "Full" }, { "snapshot_path", snapshot }, { "mem_file_path", memory } })
            == 204);
    }
    ApiVmm loaded(dir.path("b.sock"), dir.path("b.log"));
    REQUIRE(loaded.call("PUT", "/snapshot/load", { { "snapshot_path", snapshot }, { "mem_file_path", memory } }) == 204);
    auto const drives = loaded.drives();
    INFO(drives.dump());
    REQUIRE(drives.size() == 2);
    for (auto const& d : drives) {
        CHECK(d["rate_limit_group"] == "g");
        CHECK(d["rate_limiter"] == patched);
    }
}

TEST_CASE("vms create refuses disk limits it cannot keep, changing nothing")
{
    strata::test::StrataHome home("strata-rate-vm");
    // Two limits for one group.
    home.run_expect({ "vms", "create", "bad", "--firmware", blkbench, "--disk", "size=1M,id=a,rate_limit_group=g,bps=1M", "--disk",
                        "size=1M,id=b,rate_limit_group=g,bps=2M" },
        64);
    // A limit for a disk the VM does not have.
    home.run_expect({ "vms", "create", "bad", "--firmware", blkbench, "--disk", "size=1M,id=a", "--disk", "id=nosuch,bps=1M" }, 64);
    home.run_expect({ "vms", "create", "bad", "--firmware", blkbench, "--disk", "size=1M,id=a,bw_size=100" }, 64);
    auto const list = home.run({ "vms", "list" }).out;
    CHECK(list.find("bad") == std::string::npos);
    auto const disks = home.run({ "disks", "list" }).out;
    CHECK(disks.find("bad-disk") == std::string::npos);
}
