// virtio-blk under strata with real KVM, real io_uring and real files: blkcheck on
// both transports over raw files and over store disks with chains of depth 1 and
// 8, and seqwriter's multi-disk ordering checked by the independent seqcheck.
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using strata::test::ProcessOptions;
using strata::test::ProcessResult;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";
std::string const seqcheck_bin = STRATA_BUILD_DIR "/seqcheck";
std::string firmware(std::string const& name) { return STRATA_BUILD_DIR "/firmware/" + name + ".elf"; }

using strata::test::TempDir;

ProcessResult run(std::vector<std::string> argv, TempDir const& home)
{
    ProcessOptions options;
    options.argv = std::move(argv);
    options.env = { { "STRATA_HOME", (home.path / "store").string() } };
    options.timeout = 120s;
    auto r = strata::test::run_process(options);
    REQUIRE_MESSAGE(r.has_value(), "could not spawn");
    INFO(strata::test::join_argv(options.argv), "\n", r.value().describe(), "\nstdout:\n", r.value().out);
    REQUIRE_FALSE(r.value().timed_out);
    return r.value();
}

void make_raw(fs::path const& path, std::uintmax_t size)
{
    { std::ofstream(path.string()); }
    fs::resize_file(path, size);
}

bool contains(std::string const& s, std::string const& what) { return s.find(what) != std::string::npos; }

} // namespace

TEST_CASE("blkcheck passes on raw files over mmio and pci, with a read-only disk")
{
    TempDir dir;
    for (std::string transport : { "mmio", "pci" }) {
        std::vector<std::string> argv = { strata_bin, "run", "--firmware", firmware("blkcheck"), "--transport", transport,
            "--cmdline", "discard_zeroes=1 transport=" + transport };
        for (int i = 0; i < 3; ++i) {
            auto path = dir.path / (transport + std::to_string(i) + ".raw");
            make_raw(path, 32 << 20);
            argv.push_back("--disk");
            argv.push_back("path=" + path.string() + ",format=raw" + (i == 2 ? ",readonly=on" : ""));
        }
        auto r = run(argv, dir);
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "blkcheck: OK (3 disks)"));
        CHECK(contains(r.out, "read-only refused-write ok"));
    }
}

TEST_CASE("blkcheck passes on store disks at chain depth 1 and 8")
{
    TempDir dir;
    REQUIRE(run({ strata_bin, "disks", "create", "shallow", "--size", "32M" }, dir).exit_code == 0);
    REQUIRE(run({ strata_bin, "disks", "create", "deep", "--size", "32M" }, dir).exit_code == 0);
    REQUIRE(run({ strata_bin, "disks", "create", "ro", "--size", "32M" }, dir).exit_code == 0);
    // Seven snapshots stack seven frozen layers under the writable top: depth 8.
    for (int i = 0; i < 7; ++i)
        REQUIRE(run({ strata_bin, "disks", "snapshot", "deep", "--snapshot-name", "s" + std::to_string(i) }, dir).exit_code == 0);
    for (std::string transport : { "mmio", "pci" }) {
        auto r = run({ strata_bin, "run", "--firmware", firmware("blkcheck"), "--transport", transport,
                         "--cmdline", "discard_zeroes=1 transport=" + transport,
                         "--disk", "shallow", "--disk", "deep,id=deep-disk", "--disk", "ro,readonly=on" },
            dir);
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "blkcheck: OK (3 disks)"));
        CHECK(contains(r.out, "id=deep-disk"));
    }
    auto described = run({ strata_bin, "disks", "describe", "deep", "--json" }, dir);
    CHECK(described.exit_code == 0);
}

TEST_CASE("seqwriter's disks pass seqcheck, disks copied at different moments fail it")
{
    TempDir dir;
    std::vector<std::string> argv = { strata_bin, "run", "--firmware", firmware("seqwriter"), "--cmdline", "rounds=300" };
    std::vector<std::string> disks;
    for (int i = 0; i < 3; ++i) {
        auto path = dir.path / ("seq" + std::to_string(i) + ".raw");
        make_raw(path, 1 << 20);
        disks.push_back(path.string());
        argv.push_back("--disk");
        argv.push_back("path=" + path.string() + ",format=raw");
    }
    auto r = run(argv, dir);
    REQUIRE(r.exit_code == 0);
    CHECK(contains(r.out, "seqwriter: round 299"));
    std::vector<std::string> check = { seqcheck_bin };
    check.insert(check.end(), disks.begin(), disks.end());
    CHECK(run(check, dir).exit_code == 0);

    // Negative control: keep a copy of disk 0, run 100 more rounds, and check the
    // stale copy against the new disks 1 and 2.
    auto stale = dir.path / "stale0.raw";
    fs::copy_file(disks[0], stale);
    argv[5] = "rounds=100 start=300";
    REQUIRE(run(argv, dir).exit_code == 0);
    auto bad = run({ seqcheck_bin, stale.string(), disks[1], disks[2] }, dir);
    CHECK(bad.exit_code == 1);
}
