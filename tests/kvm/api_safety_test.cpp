// The VMM's API against requests it must refuse or survive, on a running
// seqwriter VM started with `strata vms start`: a capture refused for its name
// changes nothing (no disk a layer deeper, no stall of the guest), and no
// sequence of requests, malformed or cut off, ends the VMM; a client still
// sending a refused body gets to send it and reads the reply.
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/strata_home.h"
#include "vmm/api/client.h"
#include "vmm/api/unix_listener.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <poll.h>
#include <sys/socket.h>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

int const disk_count = 2;

struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-api-safety")
    {
    }
    void start_writer(std::string const& name) { StrataHome::start_writer(name, disk_count); }
    // Every store disk of the VM with its layer IDs, bottom to top.
    std::map<std::string, json> layer_lists(std::string const& vm) const
    {
        std::map<std::string, json> out;
        json const record = describe("vms", vm);
        for (auto const& d : record["disks"]) {
            std::string disk = d["disk"];
            out[disk] = describe("disks", disk)["layers"];
        }
        return out;
    }
};

strata::api::ApiResponse call(std::string const& socket, std::string const& method, std::string const& target, std::string const& body)
{
    auto r = strata::api::api_request(socket, method, target, body, 60s);
    REQUIRE_MESSAGE(r.has_value(), method, " ", target, ": ", r ? "" : r.error().message);
    return r.value();
}

// Sends all of `bytes` (false if a send failed) and, with read_reply, reads
// until the server closes; returns the reply's status line.
std::string raw_exchange(std::string const& socket, std::string_view bytes, bool read_reply, bool* sent_all = nullptr)
{
    auto fd = strata::api::connect_unix(socket);
    REQUIRE_MESSAGE(fd.has_value(), "connect ", socket);
    bool ok = true;
    while (!bytes.empty()) {
        auto n = ::send(fd.value().get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            ok = false;
            break;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    if (sent_all)
        *sent_all = ok;
    std::string out;
    while (read_reply) {
        pollfd p { fd.value().get(), POLLIN, 0 };
        if (::poll(&p, 1, 30'000) <= 0)
            break;
        char buffer[4096];
        auto n = ::recv(fd.value().get(), buffer, sizeof buffer, 0);
        if (n <= 0)
            break;
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out.substr(0, out.find("\r\n"));
}

std::string put_header(std::string const& target, std::size_t length)
{
    return "PUT " + target + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
        + std::to_string(length) + "\r\n\r\n";
}

json metrics(std::string const& socket)
{
    return json::parse(call(socket, "GET", "/metrics", "").body);
}

} // namespace

TEST_CASE("a capture refused for its name freezes no disk and does not stall the guest")
{
    Env env;
    env.start_writer("w");
    auto sock = env.socket("w");
    REQUIRE(call(sock, "PUT", "/machine-images", R"({"name":"taken"})").status == 200);
    REQUIRE(call(sock, "PUT", "/snapshot/disks", R"({"snapshot_name":"snap"})").status == 200);

    auto const layers_before = env.layer_lists("w");
    REQUIRE(layers_before.size() == static_cast<std::size_t>(disk_count));
    auto const stall_before = metrics(sock)["last_capture_stall_us"];
    REQUIRE(stall_before.is_number_unsigned());

    struct Refused {
        char const* target;
        char const* body;
        unsigned status;
    };
    // Each passes the API's own name check; the store refuses it.
    std::vector<Refused> const refused = {
        { "/machine-images", R"({"name":"taken"})", 409 },  // taken
        { "/machine-images", R"({"name":".hidden"})", 400 }, // no store name starts with '.'
        { "/machine-images", R"({"name":"-dash"})", 400 },   // nor with '-'
        { "/snapshot/disks", R"({"snapshot_name":"snap"})", 409 },
        { "/snapshot/disks", R"({"snapshot_name":"-dash"})", 400 },
    };
    for (auto const& r : refused) {
        std::string body = r.body;
        auto reply = call(sock, "PUT", r.target, body);
        INFO(std::string(r.target), " ", body, ": ", reply.status, " ", reply.body);
        CHECK(reply.status == r.status);
        // Nothing changed: every disk keeps its layers, no capture stalled the guest.
        CHECK(env.layer_lists("w") == layers_before);
        CHECK(metrics(sock)["last_capture_stall_us"] == stall_before);
    }
    // And the guest still runs.
    auto now = env.progress("w", std::nullopt);
    REQUIRE(now);
    CHECK(env.progress("w", now));
}

TEST_CASE("no request sequence ends the VMM: a capture, a malformed PUT, a 10 MB PUT, clients gone mid-body")
{
    Env env;
    env.start_writer("w");
    auto sock = env.socket("w");
    env.run({ "machine-images", "create", "img", "--source-vm", "w" });

    std::string const bad = "{\"vcpu_count\": ";
    CHECK(raw_exchange(sock, put_header("/machine-config", bad.size()) + bad, true) == "HTTP/1.1 400 Bad Request");

    // A 10 MB body sent in one go, as curl does: every send completes and the
    // client reads its 413.
    std::string const big(10 << 20, ' ');
    bool sent_all = false;
    CHECK(raw_exchange(sock, put_header("/drives/x", big.size()) + big, true, &sent_all) == "HTTP/1.1 413 Payload Too Large");
    CHECK(sent_all);

    // Clients that go away in the middle of a body, a header, or before any
    // reply: under the limit, over it, and with "Expect: 100-continue".
    for (int i = 0; i < 10; ++i) {
        (void)raw_exchange(sock, put_header("/drives/x", 60'000) + std::string(30'000, 'x'), false);
        (void)raw_exchange(sock, put_header("/drives/x", big.size()) + std::string(1 << 20, 'x'), false);
        (void)raw_exchange(sock, "PUT /drives/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10485760\r\n", false);
        (void)raw_exchange(sock, put_header("/machine-images", 20) + "{\"name\":", false);
    }

    // The VMM still answers, the guest still runs, and its log shows no
    // exception.
    auto info = call(sock, "GET", "/", "");
    CHECK(info.status == 200);
    CHECK(json::parse(info.body)["state"] == "Running");
    auto now = env.progress("w", std::nullopt);
    REQUIRE(now);
    CHECK(env.progress("w", now));
    CHECK(env.describe("vms", "w")["state"] == "running");
    std::string log_path = env.describe("vms", "w")["runtime_dir"].get<std::string>() + "/vmm.log";
    std::ifstream log(log_path);
    std::string text((std::istreambuf_iterator<char>(log)), {});
    CHECK(text.find("exception") == std::string::npos);
}
