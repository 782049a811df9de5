// A capture whose disks do not drain in time (a hung host I/O, made here by the
// test hook STRATA_TEST_BLK_DRAIN_STALL_MS) answers 504, freezes nothing and
// leaves every queue running: the guest keeps writing, and a later capture works.
#include "tests/support/strata_home.h"
#include "tests/support/seqwriter_progress.h"
#include "vmm/api/client.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-deadline", 60s)
    {
        stop_at_end("w");
    }
};

} // namespace

TEST_CASE("a capture whose disks do not drain in time answers 504, freezes nothing, and the guest runs on")
{
    Env env;
    env.run({ "vms", "create", "w", "--firmware", STRATA_BUILD_DIR "/firmware/seqwriter.elf", "--cmdline", "blocks=32", "--disk",
        "size=1M,id=d0", "--disk", "size=1M,id=d1" });
    env.run({ "vms", "start", "w" }, true, { { "STRATA_TEST_BLK_DRAIN_STALL_MS", "4000" }, { "STRATA_TEST_CAPTURE_DRAIN_DEADLINE_MS", "300" } });
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
    CHECK(env.run_raw({ "machine-images", "describe", "late" }).exit_code != 0);
    CHECK(nlohmann::json::parse(env.run({ "disks", "describe", "w-disk-d0", "--json" }).out)["layers"].size() == layers_before);
    // The queues run again: the guest gets further once the stalled drain ends.
    CHECK(strata::test::wait_for_progress(log, before).has_value());
    // And a capture now (the stall was the first drain only) works.
    env.run({ "machine-images", "create", "on-time", "--source-vm", "w" });
    CHECK(nlohmann::json::parse(env.run({ "vms", "describe", "w", "--json" }).out)["state"] == "running");
}
