// Machine images with memory (`strata machine-images create --with-memory`,
// PUT /machine-images with "memory": true) of a running seqwriter VM: the image
// records "state": "running", its state and memory files are in the store (the
// memory file sparse), and the cut is one instant for memory and disks — a
// Machine restored from the image's state and memory over raw exports of the
// image's disks continues seqwriter's run, and seqcheck then passes on those
// disks with at least the round reported before the capture. A stopped VM is
// refused, and deleting the image removes its memory.
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/strata_home.h"
#include "vmm/machine.h"
#include "vmm/machine_state.h"
#include "base/file.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string const seqcheck_bin = STRATA_BUILD_DIR "/seqcheck";
int const disk_count = 2;

struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-mim", 60s)
    {
        stop_at_end("writer");
    }
};

std::string slurp(fs::path const& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

} // namespace

TEST_CASE("a machine image with memory of a running VM restores consistent with its disks")
{
    Env env;
    std::vector<std::string> args = { "vms", "create", "writer", "--firmware", STRATA_BUILD_DIR "/firmware/seqwriter.elf",
        "--cmdline", "blocks=32", "--memory", "64" };
    for (int i = 0; i < disk_count; ++i) {
        args.push_back("--disk");
        args.push_back("size=1M,id=d" + std::to_string(i));
    }
    env.run(args);

    // A stopped VM has no memory to capture: refused, nothing recorded.
    env.run_expect({ "machine-images", "create", "early", "--source-vm", "writer", "--with-memory" }, 64);
    CHECK_FALSE(fs::exists(env.dir.path / "store" / "machine-state" / "early"));

    env.run({ "vms", "start", "writer" });
    auto const before = env.capture_running_writer("writer", "img");

    auto images = nlohmann::json::parse(env.run({ "machine-images", "list", "--json" }).out);
    REQUIRE(images.size() == 1);
    CHECK(images[0]["state"] == "running");
    auto const state_dir = env.dir.path / "store" / "machine-state" / "img";
    auto const state_file = state_dir / "state";
    auto const memory_file = state_dir / "memory";
    REQUIRE(fs::exists(state_file));
    REQUIRE(fs::exists(memory_file));
    struct stat st {};
    REQUIRE(::stat(memory_file.c_str(), &st) == 0);
    CHECK(static_cast<std::uint64_t>(st.st_size) == 64ull << 20);
    // Sparse: a firmware guest touches a few MiB of its 64.
    CHECK(static_cast<std::uint64_t>(st.st_blocks) * 512 < (16ull << 20));

    // The image's disks as raw files: a restored Machine runs on copies of them.
    env.run({ "vms", "create", "check", "--source-machine-image", "img" });
    strata::MachineConfig config;
    config.firmware = STRATA_BUILD_DIR "/firmware/seqwriter.elf";
    config.memory_mib = 64;
    std::vector<std::string> raws;
    for (int i = 0; i < disk_count; ++i) {
        std::string disk = "check-disk-d" + std::to_string(i);
        auto raw = env.dir.path / (disk + ".raw");
        env.run({ "images", "create", "x-" + disk, "--source-disk", disk });
        env.run({ "images", "export", "x-" + disk, raw.string(), "-O", "raw" });
        raws.push_back(raw.string());
        strata::DiskConfig d;
        d.path = raw.string();
        d.id = "d" + std::to_string(i);
        d.cache = strata::DiskCache::Writeback;
        config.disks.push_back(d);
    }
    auto const restored_log = env.dir.path / "restored.log";
    {
        int fd = ::open(restored_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        REQUIRE(fd >= 0);
        auto m = strata::Machine::restore(config, strata::MachineIo { fd, -1 }, state_file, memory_file);
        REQUIRE_MESSAGE(m.has_value(), m.error().message);
        strata::MachineExit exit;
        std::thread t([&] { exit = m.value()->run(); });
        // Let it write a few hundred more rounds.
        auto until = std::chrono::steady_clock::now() + 20s;
        while (slurp(restored_log).find("seqwriter: round") == std::string::npos && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(20ms);
        std::this_thread::sleep_for(300ms);
        m.value()->stop();
        t.join();
        ::close(fd);
        INFO(slurp(restored_log));
        CHECK(exit.kind == strata::MachineExit::Kind::Stopped);
        CHECK(slurp(restored_log).find("seqwriter: round") != std::string::npos);
        CHECK(slurp(restored_log).find("disks, 32 blocks") == std::string::npos); // not booted again
    }
    std::vector<std::string> check = { seqcheck_bin, "--blocks", "32", "--min-round", std::to_string(before) };
    check.insert(check.end(), raws.begin(), raws.end());
    auto r = strata::test::run_process(check, 60s);
    REQUIRE(r.has_value());
    INFO(r.value().out, r.value().err);
    CHECK(r.value().exit_code == 0);

    env.run({ "vms", "delete", "check" });
    env.run({ "machine-images", "delete", "img" });
    CHECK_FALSE(fs::exists(state_dir));
}
