// The VMM's seccomp filters (vmm/isolation/seccomp.h) with real guests: a
// forbidden system call in each kind of VMM thread (made through the test hook
// STRATA_TEST_SECCOMP_FORBIDDEN) ends the VMM with SIGSYS and a message naming the
// thread and the call; every thread of a running VMM is filtered; a guest with
// disks and the console runs, and machine images (disks only, and with memory)
// are captured, with the filters on.
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/strata_home.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/syscall.h>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";
std::string firmware(std::string const& name) { return STRATA_BUILD_DIR "/firmware/" + name + ".elf"; }

bool contains(std::string const& haystack, std::string const& needle) { return haystack.find(needle) != std::string::npos; }

// A store whose every strata command runs with the filters on.
struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-seccomp", 60s)
    {
        env = { { "STRATA_SECCOMP", "default" } };
    }
};

// Every thread of process `pid`: its name and its Seccomp mode (0, 1 or 2).
std::vector<std::pair<std::string, int>> thread_modes(long pid)
{
    std::vector<std::pair<std::string, int>> out;
    for (auto const& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string name;
        std::getline(comm, name);
        std::ifstream status(task.path() / "status");
        int mode = -1;
        for (std::string line; std::getline(status, line);) {
            if (line.rfind("Seccomp:", 0) == 0)
                mode = std::stoi(line.substr(8));
        }
        out.emplace_back(name, mode);
    }
    return out;
}

} // namespace

TEST_CASE("a forbidden system call in any kind of VMM thread ends the VMM with SIGSYS and says which")
{
    strata::test::TempDir dir("strata-seccomp-kill");
    std::string disk = dir.path("disk.raw");
    dir.file("disk.raw", 4 << 20);
    // blkcheck drives the disk, so the virtio-blk I/O thread runs too; the API
    // socket brings the API's threads.
    for (std::string kind : { "vmm", "api", "api-worker", "vcpu", "device-io" }) {
        CAPTURE(kind);
        strata::test::ProcessOptions options;
        options.argv = { strata_bin, "run", "--firmware", firmware("blkcheck"), "--disk", "path=" + disk + ",format=raw",
            "--api-socket", dir.path("api-" + kind + ".sock") };
        options.env = { { "STRATA_SECCOMP", "default" }, { "STRATA_TEST_SECCOMP_FORBIDDEN", kind } };
        options.timeout = 60s;
        auto r = strata::test::run_process(options);
        REQUIRE(r.has_value());
        INFO(r.value().describe(), "\n", r.value().out);
        REQUIRE_FALSE(r.value().timed_out);
        CHECK_FALSE(r.value().exited);
        CHECK(r.value().signal == SIGSYS);
        CHECK(contains(r.value().err, "strata: seccomp: the " + kind + " thread"));
        CHECK(contains(r.value().err, "made system call " + std::to_string(SYS_getppid) + ", which its filter forbids"));
    }
    // The control: the same knob with the filters off changes nothing.
    strata::test::ProcessOptions options;
    options.argv = { strata_bin, "run", "--seccomp", "off", "--firmware", firmware("blkcheck"), "--disk", "path=" + disk + ",format=raw" };
    options.env = { { "STRATA_TEST_SECCOMP_FORBIDDEN", "vcpu" } };
    auto r = strata::test::run_process(options);
    REQUIRE(r.has_value());
    INFO(r.value().describe(), "\n", r.value().out);
    CHECK(r.value().exit_code == 0);
}

TEST_CASE("with the filters on every VMM thread is filtered, and disks, console and captures work")
{
    Env env;
    env.stop_at_end("writer");
    env.run({ "vms", "create", "writer", "--firmware", firmware("seqwriter"), "--cmdline", "blocks=32 agent=1", "--disk", "size=1M,id=d0",
        "--disk", "size=1M,id=d1" });
    env.run({ "vms", "start", "writer" });
    auto described = nlohmann::json::parse(env.run({ "vms", "describe", "writer", "--json" }).out);
    long pid = described["pid"].get<long>();
    REQUIRE_MESSAGE(strata::test::wait_for_progress(described["serial_log"], std::nullopt), "no progress from seqwriter");
    // The guest agent answers over the virtio-console, so its thread runs too.
    env.run({ "vms", "agent", "writer", "ping" });

    auto modes = thread_modes(pid);
    std::string listing;
    for (auto const& [name, mode] : modes)
        listing += name + "=" + std::to_string(mode) + " ";
    INFO("threads: ", listing);
    for (auto const& [name, mode] : modes)
        CHECK_MESSAGE(mode == 2, name);
    for (std::string expected : { "strata-vcpu0", "strata-api", "strata-api-work", "blk-d0", "blk-d1", "strata-vconsole", "strata-relay" }) {
        bool found = false;
        for (auto const& [name, mode] : modes)
            found = found || name == expected;
        CHECK_MESSAGE(found, expected);
    }

    env.run({ "machine-images", "create", "disks-only", "--source-vm", "writer" });
    env.run({ "machine-images", "create", "with-memory", "--source-vm", "writer", "--with-memory" });
    env.run({ "vms", "agent", "writer", "ping" });
    CHECK(nlohmann::json::parse(env.run({ "vms", "describe", "writer", "--json" }).out)["state"] == "running");
    CHECK(::kill(static_cast<pid_t>(pid), 0) == 0);
    env.run({ "vms", "stop", "writer" });
}
