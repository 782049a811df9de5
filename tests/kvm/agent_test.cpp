// The guest agent channel under KVM, with seqwriter's firmware agent (fwagent.h)
// standing in for strata-agent: PUT /agent round trips on both transports, an
// agent that never answers (504, the VM keeps running), boot-complete in
// GET /metrics, `machine-images create --guest-flush` (quiesced: every disk at the
// same round; not-quiesced when the agent is silent or thaws early), and the
// generalize flow (record marked, image generalized, provisioning data required).
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/strata_home.h"
#include "vmm/api/client.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-agent")
    {
    }
    // Exports every disk of a VM made from `image` and runs seqcheck on them.
    int check_image(std::string const& image, int disks, bool same_round, std::uint64_t min_round = 0) const
    {
        return strata::test::check_image(*this, image, disks, same_round, min_round);
    }
};

strata::api::ApiResponse put_agent(std::string const& socket, std::string const& body)
{
    auto r = strata::api::api_request(socket, "PUT", "/agent", body, 30s);
    REQUIRE(r.has_value());
    return r.value();
}

} // namespace

TEST_CASE("PUT /agent ping round trip, bad bodies, boot-complete in metrics")
{
    Env env;
    env.start_writer("a", 1, "agent=1");
    auto sock = env.socket("a");
    auto ping = put_agent(sock, R"({"cmd":"ping"})");
    INFO(ping.body);
    REQUIRE(ping.status == 200);
    auto j = json::parse(ping.body);
    CHECK(j["ok"] == true);
    CHECK(j["result"]["agent"] == "strata-fw-agent");
    CHECK(j["result"]["frozen"] == false);

    CHECK(put_agent(sock, R"({"cmd":"reboot"})").status == 400);
    CHECK(put_agent(sock, R"({"cmd":"ping","timeout_s":5})").status == 400);
    CHECK(put_agent(sock, R"({"cmd":"freeze","timeout_s":0})").status == 400);
    CHECK(put_agent(sock, R"({"cmd":"ping","wait_ms":0})").status == 400);
    CHECK(put_agent(sock, "not json").status == 400);
    // The agent refuses a thaw-less second freeze: 400 with its reason.
    REQUIRE(put_agent(sock, R"({"cmd":"freeze","timeout_s":30})").status == 200);
    auto again = put_agent(sock, R"({"cmd":"freeze"})");
    CHECK(again.status == 400);
    CHECK(again.fault_message().find("already frozen") != std::string::npos);
    auto thaw = json::parse(put_agent(sock, R"({"cmd":"thaw"})").body);
    CHECK(thaw["result"]["auto_thawed"] == false);

    auto metrics = strata::api::api_request(sock, "GET", "/metrics");
    REQUIRE(metrics.has_value());
    auto m = json::parse(metrics.value().body);
    INFO(metrics.value().body);
    REQUIRE(m["boot_complete_us"].is_number_unsigned());
    CHECK(m["boot_complete_us"].get<std::uint64_t>() > 0);
    CHECK(m["console"]["bytes_from_guest"].get<std::uint64_t>() > 0);
    CHECK(m["console"]["errors"] == 0);

    // The CLI prints the reply.
    auto cli = env.run({ "vms", "agent", "a", "ping" });
    CHECK(cli.out.find("strata-fw-agent") != std::string::npos);
}

TEST_CASE("PUT /agent over virtio-pci")
{
    Env env;
    env.start_writer("p", 2, "agent=1", "pci");
    auto ping = put_agent(env.socket("p"), R"({"cmd":"ping"})");
    INFO(ping.body);
    CHECK(ping.status == 200);
}

TEST_CASE("an agent that never answers: 504, and the VM keeps running")
{
    Env env;
    env.start_writer("s", 1, "agent=silent");
    auto sock = env.socket("s");
    auto r = put_agent(sock, R"({"cmd":"ping","wait_ms":300})");
    CHECK(r.status == 504);
    CHECK(r.fault_message().find("did not answer") != std::string::npos);
    auto cli = env.run({ "vms", "agent", "s", "ping", "--wait", "200" }, false);
    CHECK(cli.exit_code == 75);
    auto root = strata::api::api_request(sock, "GET", "/");
    REQUIRE(root.has_value());
    CHECK(json::parse(root.value().body)["state"] == "Running");
}

TEST_CASE("machine-images create --guest-flush: quiesced, every disk at the same round")
{
    Env env;
    int const disks = 3;
    env.start_writer("q", disks, "agent=1");
    std::vector<std::uint64_t> reported_before;
    std::optional<std::uint64_t> reported;
    for (int i = 0; i < 3; ++i) {
        std::string name = "q" + std::to_string(i);
        reported = env.progress("q", reported);
        REQUIRE(reported);
        reported_before.push_back(*reported);
        auto r = env.run({ "machine-images", "create", name, "--source-vm", "q", "--guest-flush" });
        CHECK(r.out.find("guest flush: quiesced") != std::string::npos);
    }
    auto described = env.run({ "machine-images", "describe", "q0" });
    CHECK(described.out.find("guest flush: quiesced") != std::string::npos);
    // The guest really held still for each capture: frozen, then thawed by the VMM.
    std::string serial_log = env.describe("vms", "q")["serial_log"];
    env.run({ "vms", "stop", "q", "--force" });
    std::ifstream in(serial_log);
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto count = [&](std::string const& what) {
        std::size_t n = 0;
        for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1))
            ++n;
        return n;
    };
    CHECK(count("fwagent: frozen") == 3);
    CHECK(count("fwagent: thawed") == 3);
    CHECK(count("thawed by itself") == 0);
    for (int i = 0; i < 3; ++i) {
        std::string name = "q" + std::to_string(i);
        CHECK(env.describe("machine-images", name)["guest_flush"] == "quiesced");
        CHECK(env.check_image(name, disks, true, reported_before[static_cast<std::size_t>(i)]) == 0);
    }
}

TEST_CASE("--guest-flush with a silent or early-thawing agent still captures, not quiesced")
{
    Env env;
    env.start_writer("silent", 2, "agent=silent");
    auto silent_round = env.progress("silent", std::nullopt);
    REQUIRE(silent_round);
    auto r = env.run({ "machine-images", "create", "s0", "--source-vm", "silent", "--guest-flush", "--guest-flush-wait", "500" });
    CHECK(r.err.find("warning") != std::string::npos);
    auto s0 = env.describe("machine-images", "s0");
    std::string flush = s0["guest_flush"];
    CHECK(flush.starts_with("not-quiesced: "));
    CHECK(flush.find("did not answer") != std::string::npos);

    env.start_writer("early", 2, "agent=1 agent_freeze_max_ms=1");
    auto early_round = env.progress("early", std::nullopt);
    REQUIRE(early_round);
    env.run({ "machine-images", "create", "e0", "--source-vm", "early", "--guest-flush" });
    std::string early = env.describe("machine-images", "e0")["guest_flush"];
    CHECK(early.find("thawed by itself") != std::string::npos);

    // Plain captures record no guest_flush.
    env.run({ "machine-images", "create", "plain", "--source-vm", "early" });
    CHECK_FALSE(env.describe("machine-images", "plain").contains("guest_flush"));
    env.run({ "vms", "stop", "silent", "--force" });
    env.run({ "vms", "stop", "early", "--force" });
    CHECK(env.check_image("s0", 2, false, *silent_round) == 0);
    CHECK(env.check_image("e0", 2, false, *early_round) == 0);
}

TEST_CASE("generalize: the VM ends, its record and images are generalized, clones need provisioning data")
{
    Env env;
    env.start_writer("g", 1, "agent=1");
    auto before = env.describe("vms", "g");
    std::string instance = before["instance_id"];
    CHECK(instance.starts_with("i-"));
    // A specialized image first: its clones keep the instance id.
    env.run({ "machine-images", "create", "spec", "--source-vm", "g" });
    auto r = env.run({ "vms", "generalize", "g" });
    CHECK(r.out.find("is generalized") != std::string::npos);
    auto after = env.describe("vms", "g");
    CHECK(after["generalized"] == true);
    CHECK(after["state"] == "stopped");
    auto start = env.run({ "vms", "start", "g" }, false);
    CHECK(start.exit_code == 64);
    CHECK(start.err.find("generalized") != std::string::npos);

    env.run({ "machine-images", "create", "gen", "--source-vm", "g" });
    auto gen = env.describe("machine-images", "gen");
    CHECK(gen["os_state"] == "generalized");
    CHECK(env.run({ "machine-images", "describe", "gen" }).out.find("os state: generalized") != std::string::npos);
    CHECK(env.describe("machine-images", "spec")["os_state"] == "specialized");

    auto refused = env.run({ "vms", "create", "c0", "--source-machine-image", "gen" }, false);
    CHECK(refused.exit_code == 64);
    CHECK(refused.err.find("provisioning data") != std::string::npos);
    CHECK(env.run({ "vms", "create", "c0", "--source-machine-image", "gen", "--metadata", "owner=x" }, false).exit_code == 64);
    env.run({ "vms", "create", "c0", "--source-machine-image", "gen", "--metadata", "hostname=web-1" });
    auto c0 = env.describe("vms", "c0");
    CHECK(c0["generalized"] == false);
    CHECK(c0["instance_id"] != instance);
    env.run({ "vms", "create", "c1", "--source-machine-image", "spec" });
    CHECK(env.describe("vms", "c1")["instance_id"] == instance);
    // The clone of the generalized image boots.
    env.run({ "vms", "start", "c0" });
    env.stop_at_end("c0");
    CHECK(json::parse(env.run({ "vms", "agent", "c0", "ping" }).out)["ok"] == true);
}
