// Firecracker's snapshot API on strata's VMM (PUT /snapshot/create and
// /snapshot/load, vmm/snapshot_file.h), scripted as a Firecracker user would: a
// `strata vmm --api-socket` configured through the API runs seqwriter on two raw
// drives with dirty page tracking; it is paused and snapshotted Full, resumed,
// paused again and snapshotted Diff (only the pages written since), and each
// snapshot is loaded into a new, unconfigured VMM, where seqwriter continues
// without booting again and seqcheck then passes on the drive copies the
// snapshot made, holding at least the round reported before the cut. The Diff
// is laid over the Full memory file; the VMM's own writes (used rings, status
// bytes) are in it, or the restored guest would wait for completions it missed.
// Bad requests get 400 and change nothing: a snapshot of a running VM, a Diff
// with no snapshot below it, a file that exists, a tampered snapshot file, a
// memory file of another snapshot, a missing one, a load into a configured VMM.
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/temp_dir.h"
#include "vmm/api/client.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

extern char** environ;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";
std::string const seqcheck_bin = STRATA_BUILD_DIR "/seqcheck";
std::string const seqwriter_elf = STRATA_BUILD_DIR "/firmware/seqwriter.elf";
int const disk_count = 2;

std::string slurp(fs::path const& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// An unconfigured `strata vmm --api-socket`, its serial output in `out`.
struct Vmm {
    pid_t pid { -1 };
    fs::path out;
    std::string socket;

    explicit Vmm(fs::path const& dir)
        : out(dir / "serial.out")
        , socket((dir / "api.sock").string())
    {
        fs::create_directories(dir);
        std::vector<std::string> args = { strata_bin, "vmm", "--api-socket", socket };
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&actions, 2, (out.string() + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        REQUIRE(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) == 0);
        posix_spawn_file_actions_destroy(&actions);
        auto const until = std::chrono::steady_clock::now() + 20s;
        while (std::chrono::steady_clock::now() < until) {
            auto r = strata::api::api_request(socket, "GET", "/", {}, 2s);
            if (r && r.value().status == 200)
                return;
            std::this_thread::sleep_for(10ms);
        }
        FAIL("the VMM's API never answered: ", slurp(out.string() + ".err"));
    }
    ~Vmm()
    {
        if (pid > 0) {
            ::kill(pid, SIGTERM);
            int status = 0;
            ::waitpid(pid, &status, 0);
        }
    }
    strata::api::ApiResponse call(std::string_view method, std::string_view target, json const& body = nullptr) const
    {
        auto r = strata::api::api_request(socket, method, target, body.is_null() ? std::string() : body.dump(), 120s);
        REQUIRE_MESSAGE(r.has_value(), r.error().message);
        return r.value();
    }
    void expect(unsigned status, std::string_view method, std::string_view target, json const& body = nullptr) const
    {
        auto r = call(method, target, body);
        INFO(method, " ", target, " ", body.dump(), " -> ", r.status, " ", r.body, "\n", slurp(out.string() + ".err"));
        REQUIRE(r.status == status);
    }
    // A 400 whose fault_message contains `needle`.
    void refused(std::string_view method, std::string_view target, json const& body, std::string const& needle) const
    {
        auto r = call(method, target, body);
        INFO(method, " ", target, " ", body.dump(), " -> ", r.status, " ", r.body);
        CHECK(r.status == 400);
        CHECK(r.fault_message().find(needle) != std::string::npos);
    }
    std::string state() const { return json::parse(call("GET", "/").body).value("state", ""); }
    std::string serial() const { return slurp(out); }
    // Waits until the guest prints `needle` (or fails), up to `limit`: a bound on
    // a hang (seqwriter to its end took over 120 s inside the emulated machine on
    // a host at load average 9-11).
    bool wait_for(std::string const& needle, std::chrono::seconds limit) const
    {
        auto const until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            auto const s = serial();
            if (s.find(needle) != std::string::npos)
                return true;
            if (s.find("FAIL") != std::string::npos)
                return false;
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }
};

strata::test::ProcessResult seqcheck(std::vector<fs::path> const& disks, std::uint64_t min_round)
{
    std::vector<std::string> argv { seqcheck_bin, "--min-round", std::to_string(min_round) };
    for (auto const& d : disks)
        argv.push_back(d.string());
    auto r = strata::test::run_process(argv, 60s);
    REQUIRE(r.has_value());
    return r.value();
}

std::uint64_t allocated_bytes(fs::path const& p)
{
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

std::vector<fs::path> copies(fs::path const& snapshot)
{
    std::vector<fs::path> out;
    for (int i = 0; i < disk_count; ++i)
        out.push_back(snapshot.parent_path() / (snapshot.filename().string() + ".disk-disk" + std::to_string(i)));
    return out;
}

} // namespace

TEST_CASE("Firecracker's snapshot API: Full and Diff snapshots of a seqwriter VM load into new VMMs and continue with their disks")
{
    strata::test::TempDir tmp;
    fs::path const dir = tmp.path;
    fs::path const snaps = dir / "snaps";
    fs::create_directories(snaps);

    std::uint64_t round1 = 0, round2 = 0;
    fs::path const s1 = snaps / "full.snap", m1 = snaps / "full.mem", s2 = snaps / "diff.snap", m2 = snaps / "diff.mem";
    {
        Vmm a(dir / "a");
        a.expect(204, "PUT", "/boot-source", { { "firmware_path", seqwriter_elf }, { "boot_args", "rounds=1500 timeout_ms=20000" } });
        a.expect(204, "PUT", "/machine-config", { { "vcpu_count", 1 }, { "mem_size_mib", 64 }, { "track_dirty_pages", true } });
        for (int i = 0; i < disk_count; ++i) {
            auto const disk = dir / ("disk" + std::to_string(i) + ".raw");
            std::ofstream { disk };
            fs::resize_file(disk, 1 << 20);
            a.expect(204, "PUT", "/drives/disk" + std::to_string(i),
                { { "drive_id", "disk" + std::to_string(i) }, { "path_on_host", disk.string() }, { "is_root_device", false },
                    { "is_read_only", false }, { "cache_type", "Writeback" } });
        }
        a.expect(204, "PUT", "/actions", { { "action_type", "InstanceStart" } });
        REQUIRE_MESSAGE(strata::test::wait_for_progress(a.out.string(), std::nullopt), a.serial());

        json const full { { "snapshot_type", "Full" }, { "snapshot_path", s1.string() }, { "mem_file_path", m1.string() } };
        a.refused("PUT", "/snapshot/create", full, "paused");
        CHECK_FALSE(fs::exists(s1));
        CHECK_FALSE(fs::exists(m1));
        a.expect(204, "PATCH", "/vm", { { "state", "Paused" } });
        CHECK(a.state() == "Paused");
        a.refused("PUT", "/snapshot/create", { { "snapshot_type", "Diff" }, { "snapshot_path", s2.string() }, { "mem_file_path", m2.string() } },
            "previous snapshot");
        CHECK_FALSE(fs::exists(s2));
        CHECK_FALSE(fs::exists(m2));
        round1 = *strata::test::last_reported_round(a.out.string());
        a.expect(204, "PUT", "/snapshot/create", full);
        CHECK(a.state() == "Paused");
        for (auto const& c : copies(s1))
            CHECK(fs::exists(c));
        // The same files again: refused, and the snapshot is as it was.
        auto const before = slurp(s1);
        a.refused("PUT", "/snapshot/create", full, "exists");
        CHECK(slurp(s1) == before);

        a.expect(204, "PATCH", "/vm", { { "state", "Resumed" } });
        REQUIRE_MESSAGE(strata::test::wait_for_progress(a.out.string(), round1 + 100), a.serial());
        a.expect(204, "PATCH", "/vm", { { "state", "Paused" } });
        round2 = *strata::test::last_reported_round(a.out.string());
        a.expect(204, "PUT", "/snapshot/create", { { "snapshot_type", "Diff" }, { "snapshot_path", s2.string() }, { "mem_file_path", m2.string() } });
        // The source runs on after its snapshots (Firecracker's "insecure" use, made
        // safe for the disks by their copies).
        a.expect(204, "PATCH", "/vm", { { "state", "Resumed" } });
        CHECK(a.wait_for("seqwriter: done", 300s));
    }
    auto const full_bytes = allocated_bytes(m1), diff_bytes = allocated_bytes(m2);
    MESSAGE("full ", full_bytes, " bytes allocated, diff ", diff_bytes);
    CHECK(diff_bytes < full_bytes);
    CHECK(fs::file_size(m2) == 64u << 20);

    {
        // The Diff over the Full, resumed at once.
        Vmm b(dir / "b");
        b.expect(204, "PUT", "/snapshot/load",
            { { "snapshot_path", s2.string() }, { "mem_backend", { { "backend_type", "File" }, { "backend_path", m2.string() } } },
                { "resume_vm", true } });
        CHECK(b.state() == "Running");
        REQUIRE_MESSAGE(b.wait_for("seqwriter: done", 300s), b.serial());
        // Continued, not booted again: no start-up line.
        CHECK(b.serial().find("seqwriter: 2 disks") == std::string::npos);
        auto check = seqcheck(copies(s2), round2);
        INFO(check.out, check.err);
        CHECK(check.exit_code == 0);
    }

    {
        Vmm c(dir / "c");
        // A tampered snapshot file: one byte changed in the middle.
        auto bytes = slurp(s1);
        bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
        fs::path const bad = snaps / "bad.snap";
        std::ofstream(bad, std::ios::binary) << bytes;
        c.refused("PUT", "/snapshot/load", { { "snapshot_path", bad.string() }, { "mem_file_path", m1.string() } }, "checksum");
        CHECK(c.state() == "Not started");
        // The Diff's snapshot with the Full's memory file as its top.
        c.refused("PUT", "/snapshot/load", { { "snapshot_path", s2.string() }, { "mem_file_path", m1.string() } }, "does not match");
        c.refused("PUT", "/snapshot/load", { { "snapshot_path", s1.string() }, { "mem_file_path", (snaps / "none.mem").string() } }, "none.mem");
        CHECK(c.state() == "Not started");
        // Nothing changed: the Full loads into the same VMM, paused, and continues on resume.
        c.expect(204, "PUT", "/snapshot/load", { { "snapshot_path", s1.string() }, { "mem_file_path", m1.string() } });
        CHECK(c.state() == "Paused");
        c.refused("PUT", "/snapshot/load", { { "snapshot_path", s1.string() }, { "mem_file_path", m1.string() } }, "");
        c.expect(204, "PATCH", "/vm", { { "state", "Resumed" } });
        REQUIRE_MESSAGE(c.wait_for("seqwriter: done", 300s), c.serial());
        CHECK(c.serial().find("seqwriter: 2 disks") == std::string::npos);
        auto check = seqcheck(copies(s1), round1);
        INFO(check.out, check.err);
        CHECK(check.exit_code == 0);
    }

    {
        // A VMM with something configured takes no snapshot.
        Vmm d(dir / "d");
        d.expect(204, "PUT", "/boot-source", { { "firmware_path", seqwriter_elf } });
        d.refused("PUT", "/snapshot/load", { { "snapshot_path", s1.string() }, { "mem_file_path", m1.string() } }, "nothing configured");
        CHECK(d.state() == "Not started");
    }
}
