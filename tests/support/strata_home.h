// Running build/strata from tests: run_strata, the one way every test spawns the
// strata command against a store (STRATA_HOME); StrataHome, a temporary store with
// a run() that fails the test on a timeout or an unexpected exit code; and
// check_image, which judges a machine image of seqwriter's disks with seqcheck.
// Threading: test main thread only (run_process forks; see process.h).
#pragma once

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace strata::test {

inline std::string const strata_bin = STRATA_BUILD_DIR "/strata";
inline std::string const seqcheck_bin = STRATA_BUILD_DIR "/seqcheck";

struct StrataRunOptions {
    std::vector<std::pair<std::string, std::string>> env; // on top of STRATA_HOME
    std::optional<std::string> stdin_path;
    std::chrono::milliseconds timeout { 90'000 };
};

// Runs `strata args...` with STRATA_HOME=home (an empty home leaves STRATA_HOME as
// it is). Like run_process, a spawn failure is an error and a failing or hung
// strata a result, for the caller to judge.
[[nodiscard]] inline Result<ProcessResult> run_strata(std::string const& home, std::vector<std::string> const& args,
    StrataRunOptions options = {})
{
    ProcessOptions p;
    p.argv = { strata_bin };
    p.argv.insert(p.argv.end(), args.begin(), args.end());
    p.env = std::move(options.env);
    if (!home.empty())
        p.env.emplace_back("STRATA_HOME", home);
    p.stdin_path = std::move(options.stdin_path);
    p.timeout = options.timeout;
    return run_process(p);
}

// A temporary directory whose store/ is STRATA_HOME for the strata commands run().
class StrataHome {
public:
    explicit StrataHome(std::string const& prefix = "strata-home", std::chrono::milliseconds timeout = std::chrono::seconds(90))
        : dir(prefix)
        , m_timeout(timeout)
    {
    }

    std::string store() const { return dir.path("store"); }

    // Never fails the test (so destructors may stop VMs with it): a spawn failure
    // gives a default ProcessResult.
    ProcessResult run_raw(std::vector<std::string> const& args) const
    {
        auto r = run_strata(store(), args, StrataRunOptions { {}, {}, m_timeout });
        return r ? r.value() : ProcessResult {};
    }

    // Requires that strata ends in time and, when must_succeed, with exit code 0.
    ProcessResult run(std::vector<std::string> const& args, bool must_succeed = true) const
    {
        auto r = run_raw(args);
        INFO(join_argv(args), "\n", r.describe(), "\n", r.out);
        REQUIRE_FALSE(r.timed_out);
        if (must_succeed)
            REQUIRE(r.exit_code == 0);
        return r;
    }

    TempDir dir;

private:
    std::chrono::milliseconds m_timeout;
};

// Makes a VM from machine image `image` (nothing boots), exports each of its disks
// d0..d<disks-1> to a raw file and runs seqcheck over them with seqwriter's 32
// blocks; returns seqcheck's exit code. same_round asks that every disk stopped in
// the same round; min_round > 0 asks for at least that round (seqcheck
// --min-round; 0 leaves it out).
inline int check_image(StrataHome const& home, std::string const& image, int disks, bool same_round = false,
    std::uint64_t min_round = 0)
{
    std::string vm = "check-" + image;
    home.run({ "vms", "create", vm, "--source-machine-image", image });
    std::vector<std::string> check = { seqcheck_bin, "--blocks", "32" };
    if (same_round)
        check.push_back("--same-round");
    if (min_round > 0) {
        check.push_back("--min-round");
        check.push_back(std::to_string(min_round));
    }
    for (int i = 0; i < disks; ++i) {
        std::string disk = vm + "-disk-d" + std::to_string(i);
        std::string raw = home.dir.path(disk + ".raw");
        home.run({ "images", "create", "x-" + disk, "--source-disk", disk });
        home.run({ "images", "export", "x-" + disk, raw, "-O", "raw" });
        check.push_back(raw);
    }
    auto r = run_process(check, std::chrono::seconds(60));
    REQUIRE(r.has_value());
    INFO(image, ": ", r.value().out, r.value().err);
    return r.value().exit_code;
}

} // namespace strata::test
