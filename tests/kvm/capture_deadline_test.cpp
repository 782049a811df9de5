// A capture whose disks do not drain in time (a hung host I/O, made here by the
// test hook STRATA_TEST_BLK_DRAIN_STALL_MS) answers 504, freezes nothing and
// leaves every queue running: the guest keeps writing, and a later capture works.
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/temp_dir.h"
#include "vmm/api/client.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";

struct Env {
    strata::test::TempDir dir { "strata-deadline" };
    ~Env() { (void)run_raw({ "vms", "stop", "w", "--force" }); }
    strata::Result<strata::test::ProcessResult> run_raw(std::vector<std::string> args, std::vector<std::pair<std::string, std::string>> env = {}) const
    {
        strata::test::ProcessOptions options;
        options.argv = { strata_bin };
        options.argv.insert(options.argv.end(), args.begin(), args.end());
        options.env = { { "STRATA_HOME", dir.path("store") } };
        options.env.insert(options.env.end(), env.begin(), env.end());
        options.timeout = 60s;
        return strata::test::run_process(options);
    }
    strata::test::ProcessResult run(std::vector<std::string> args, std::vector<std::pair<std::string, std::string>> env = {}) const
    {
        auto r = run_raw(args, env);
        REQUIRE(r.has_value());
        INFO(strata::test::join_argv(args), "\n", r.value().describe(), "\n", r.value().out);
        REQUIRE(r.value().exit_code == 0);
        return r.value();
    }
};

} // namespace

TEST_CASE("a capture whose disks do not drain in time answers 504, freezes nothing, and the guest runs on")
{
    Env env;
    env.run({ "vms", "create", "w", "--firmware", STRATA_BUILD_DIR "/firmware/seqwriter.elf", "--cmdline", "blocks=32", "--disk",
        "size=1M,id=d0", "--disk", "size=1M,id=d1" });
    env.run({ "vms", "start", "w" }, { { "STRATA_TEST_BLK_DRAIN_STALL_MS", "4000" }, { "STRATA_TEST_CAPTURE_DRAIN_DEADLINE_MS", "300" } });
    auto described = nlohmann::json::parse(env.run({ "vms", "describe", "w", "--json" }).out);
    std::string const log = described["serial_log"];
    std::string const socket = described["api_socket"];
    auto before = strata::test::wait_for_progress(log, std::nullopt);
    REQUIRE(before.has_value());
    auto layers_before = nlohmann::json::parse(env.run({ "disks", "describe", "w-disk-d0", "--json" }).out)["layers"].size();

    auto reply = strata::api::api_request(socket, "PUT", "/machine-images", R"({"name": "late"})", 30s);
    REQUIRE(reply.has_value());
    INFO(reply.value().body);
    CHECK(reply.value().status == 504);
    CHECK(reply.value().fault_message().find("did not drain") != std::string::npos);
    // Nothing was frozen or recorded.
    CHECK(env.run_raw({ "machine-images", "describe", "late" }).value().exit_code != 0);
    CHECK(nlohmann::json::parse(env.run({ "disks", "describe", "w-disk-d0", "--json" }).out)["layers"].size() == layers_before);
    // The queues run again: the guest gets further once the stalled drain ends.
    CHECK(strata::test::wait_for_progress(log, before).has_value());
    // And a capture now (the stall was the first drain only) works.
    env.run({ "machine-images", "create", "on-time", "--source-vm", "w" });
    CHECK(nlohmann::json::parse(env.run({ "vms", "describe", "w", "--json" }).out)["state"] == "running");
}
