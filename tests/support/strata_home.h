// Running build/strata from tests: run_strata, the one way every test spawns the
// strata command against a store (STRATA_HOME); StrataHome, a temporary store with
// a run() that fails the test on a timeout or an unexpected exit code, the VMs it
// stops at its end, and seqwriter VMs with their progress; and
// check_image, which judges a machine image of seqwriter's disks with seqcheck.
// Threading: test main thread only (run_process forks; see process.h).
#pragma once

#include "tests/support/process.h"
#include "tests/support/read_text.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
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

// A temporary directory whose store/ is STRATA_HOME for the strata commands run(),
// with `env` added to each. VMs named to stop_at_end() are stopped (--force) when
// it goes, whatever the test did: their VMMs run in sessions of their own.
class StrataHome {
public:
    explicit StrataHome(std::string const& prefix = "strata-home", std::chrono::milliseconds timeout = std::chrono::seconds(90))
        : dir(prefix)
        , m_timeout(timeout)
    {
    }
    ~StrataHome()
    {
        for (auto const& vm : m_vms)
            (void)run_raw({ "vms", "stop", vm, "--force" });
    }
    StrataHome(StrataHome const&) = delete;
    StrataHome& operator=(StrataHome const&) = delete;

    std::string store() const { return dir.path("store"); }

    void stop_at_end(std::string const& vm)
    {
        if (std::find(m_vms.begin(), m_vms.end(), vm) == m_vms.end())
            m_vms.push_back(vm);
    }

    // Never fails the test (so destructors may stop VMs with it): a spawn failure
    // gives a default ProcessResult.
    ProcessResult run_raw(std::vector<std::string> const& args, std::vector<std::pair<std::string, std::string>> const& extra_env = {}) const
    {
        auto all = env;
        all.insert(all.end(), extra_env.begin(), extra_env.end());
        auto r = run_strata(store(), args, StrataRunOptions { std::move(all), {}, m_timeout });
        return r ? r.value() : ProcessResult {};
    }

    // Requires that strata ends in time and, when must_succeed, with exit code 0.
    ProcessResult run(std::vector<std::string> const& args, bool must_succeed = true,
        std::vector<std::pair<std::string, std::string>> const& extra_env = {}) const
    {
        auto r = run_raw(args, extra_env);
        INFO(join_argv(args), "\n", r.describe(), "\n", r.out, "\n", r.err);
        REQUIRE_FALSE(r.timed_out);
        if (must_succeed)
            REQUIRE(r.exit_code == 0);
        return r;
    }

    // An exit code is asked for with run_expect: an int here would turn into
    // must_succeed (0 meaning "any exit code").
    ProcessResult run(std::vector<std::string> const& args, int expect) const = delete;
    ProcessResult run(std::vector<std::string> const& args, int expect, std::vector<std::pair<std::string, std::string>> const&) const = delete;

    // Requires that strata ends in time with exit code `expect`.
    ProcessResult run_expect(std::vector<std::string> const& args, int expect) const
    {
        auto r = run_raw(args);
        INFO(join_argv(args), "\n", r.describe(), "\n", r.out, "\n", r.err);
        REQUIRE_FALSE(r.timed_out);
        REQUIRE(r.exit_code == expect);
        return r;
    }

    // `strata KIND describe NAME --json`, parsed.
    nlohmann::json describe(std::string const& kind, std::string const& name) const
    {
        return nlohmann::json::parse(run({ kind, "describe", name, "--json" }).out);
    }

    // Creates and starts a seqwriter VM with `disks` 1 MiB disks d0.. and the
    // given extra command-line words, and waits for its first progress line.
    void start_writer(std::string const& name, int disks, std::string const& extra = "", std::string const& transport = "mmio")
    {
        std::vector<std::string> args = { "vms", "create", name, "--firmware", STRATA_BUILD_DIR "/firmware/seqwriter.elf", "--cmdline",
            "blocks=32 transport=" + transport + (extra.empty() ? "" : " " + extra), "--transport", transport };
        for (int i = 0; i < disks; ++i) {
            args.push_back("--disk");
            args.push_back("size=1M,id=d" + std::to_string(i));
        }
        run(args);
        stop_at_end(name);
        run({ "vms", "start", name });
        if (!progress(name, std::nullopt)) {
            // Seen in a CI-like run, with no word of why: the guest's and its VMM's
            // logs say whether the guest ran, faulted or was never started.
            std::string const log = describe("vms", name)["serial_log"];
            INFO("serial log:\n", read_text(log), "\nvmm.log:\n", read_text(std::filesystem::path(log).parent_path() / "vmm.log"));
            FAIL("no progress from seqwriter in VM ", name);
        }
    }

    // Waits for a seqwriter progress line of the VM past `above`; returns the round.
    std::optional<std::uint64_t> progress(std::string const& vm, std::optional<std::uint64_t> above) const
    {
        return wait_for_progress(describe("vms", vm)["serial_log"], above);
    }

    std::string socket(std::string const& vm) const { return describe("vms", vm)["api_socket"]; }

    // For a running seqwriter VM: waits for its first progress line, captures it
    // with its memory as machine image `image` and stops it (--force); returns
    // the last round it reported before the capture.
    std::uint64_t capture_running_writer(std::string const& vm, std::string const& image) const
    {
        std::string const log = describe("vms", vm)["serial_log"];
        REQUIRE_MESSAGE(wait_for_progress(log, std::nullopt), "no progress from seqwriter in VM ", vm);
        auto const before = last_reported_round(log);
        REQUIRE(before.has_value());
        auto const made = run_raw({ "machine-images", "create", image, "--source-vm", vm, "--with-memory" });
        if (made.exit_code != 0) {
            // Once the VMM closed the request's connection without a reply: its logs
            // say whether the VMM or its guest ended, and why.
            auto const folder = std::filesystem::path(log).parent_path();
            INFO("machine-images create: ", made.describe(), "\n", made.err, "\nserial log:\n", read_text(log),
                "\nvmm.log:\n", read_text(folder / "vmm.log"));
            REQUIRE(made.exit_code == 0);
        }
        run({ "vms", "stop", vm, "--force" });
        return *before;
    }

    TempDir dir;
    std::vector<std::pair<std::string, std::string>> env; // on top of STRATA_HOME, for every run

private:
    std::chrono::milliseconds m_timeout;
    std::vector<std::string> m_vms;
};

// Makes a VM from machine image `image` (nothing boots), exports each of its disks
// d0..d<disks-1> to a raw file and runs seqcheck over them with seqwriter's 32
// blocks; returns seqcheck's result. same_round asks that every disk stopped in
// the same round; min_round > 0 asks for at least that round (seqcheck
// --min-round; 0 leaves it out).
inline ProcessResult check_image_result(StrataHome const& home, std::string const& image, int disks, bool same_round = false,
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
    return r.value();
}

// The same, for its exit code; seqcheck's words are shown when it is not 0.
inline int check_image(StrataHome const& home, std::string const& image, int disks, bool same_round = false,
    std::uint64_t min_round = 0)
{
    auto r = check_image_result(home, image, disks, same_round, min_round);
    if (r.exit_code != 0)
        MESSAGE(image, ": seqcheck exit ", r.exit_code, ": ", r.out, r.err);
    return r.exit_code;
}

} // namespace strata::test
