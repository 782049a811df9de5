// strata-agent's metadata service client (guest-tools/agent/mmds_client.h) on
// the host: a fake environment whose HTTP requests are answered by strata's own
// metadata service (devices/virtio/net/mmds_store.h), filled with what a stored
// VM serves, so the token flow and the tree's shape are the real ones.
#include "environment.h"
#include "mmds_client.h"

#include "devices/virtio/net/mmds_store.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>

using namespace strata::agent;
namespace net = strata::virtio::net;

namespace {

class NetEnvironment final : public Environment {
public:
    explicit NetEnvironment(std::shared_ptr<net::MmdsStore> store)
        : m_store(std::move(store))
    {
    }
    std::filesystem::path root() const override { return "/nonexistent"; }
    std::vector<Mount> mounts() override { return {}; }
    std::string freeze(std::string const&) override { return "no"; }
    std::string thaw(std::string const&) override { return "no"; }
    void power_off() override { }
    void set_hostname(std::string const&) override { }
    std::chrono::steady_clock::time_point now() override { return m_now; }
    void sleep(std::chrono::milliseconds d) override
    {
        m_now += d;
        ++sleeps;
        if (sleeps == appear_after_sleeps)
            interfaces = { "eth0", "eth1" };
    }

    std::vector<std::string> network_interfaces() override { return interfaces; }
    std::uint32_t current_ipv4(std::string const& iface) override { return iface == "eth0" ? address : 0; }
    std::string configure_ipv4(Ipv4Setting const& setting) override
    {
        settings.push_back(setting);
        if (!refuse_configure.empty())
            return refuse_configure;
        if (!setting.keep_address)
            address = setting.address;
        return {};
    }
    HttpReply http(HttpRequest const& request, std::chrono::milliseconds) override
    {
        requests.push_back(request);
        if (!m_store || request.address != service_address)
            return HttpReply { 0, {}, "connect: no answer within 3000 ms" };
        if (!override_reply.empty() && request.method == "GET")
            return parse_http_reply(override_reply);
        // What the service answers, through its own request type: header names lower-cased.
        net::MmdsRequest r { request.method, request.path, {} };
        for (auto const& [name, value] : request.headers) {
            std::string lower = name;
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            r.headers.emplace_back(lower, value);
        }
        auto reply = m_store->answer(r, std::chrono::steady_clock::now());
        return HttpReply { reply.status, reply.body, {} };
    }

    std::vector<std::string> interfaces { "eth0" };
    std::uint32_t address { 0 };
    std::uint32_t service_address { kMmdsDefaultAddress };
    std::vector<Ipv4Setting> settings;
    std::vector<HttpRequest> requests;
    std::string refuse_configure;
    std::string override_reply;
    int sleeps { 0 };
    int appear_after_sleeps { -1 };

private:
    std::shared_ptr<net::MmdsStore> m_store;
    std::chrono::steady_clock::time_point m_now {};
};

// What vmm/vm_config.cpp's mmds_data_for serves for a VM (its shape, kept here
// by hand so that a change to either side shows).
std::string served(nlohmann::json metadata)
{
    return nlohmann::json { { "latest", { { "meta-data", { { "instance-id", "i-00aa" }, { "local-hostname", "web-1" } } } } },
        { "strata", { { "instance-id", "i-00aa" }, { "name", "web" }, { "metadata", metadata } } } }
        .dump();
}

std::shared_ptr<net::MmdsStore> service(net::MmdsVersion version, std::string const& data)
{
    auto store = net::MmdsStore::create(version);
    REQUIRE(store->put(data));
    return store;
}

} // namespace

TEST_CASE("the agent reads a V2 metadata service with a session token and takes its address from the metadata")
{
    auto store = service(net::MmdsVersion::V2,
        served({ { "hostname", "web-1" }, { "user", "alice" }, { "ssh-authorized-keys", "ssh-ed25519 AAAA a;ssh-rsa BBBB b" },
            { "ipv4-address", "10.0.0.2/24" }, { "ipv4-gateway", "10.0.0.1" } }));
    NetEnvironment env(store);
    auto out = fetch_mmds_metadata(env, MmdsOptions {});
    REQUIRE_MESSAGE(out.metadata, out.error);
    CHECK(out.error.empty());
    CHECK(out.iface == "eth0");
    CHECK(out.metadata->instance_id == "i-00aa");
    CHECK(out.metadata->hostname == "web-1");
    CHECK(out.metadata->user == "alice");
    CHECK(out.metadata->ssh_authorized_keys == std::vector<std::string> { "ssh-ed25519 AAAA a", "ssh-rsa BBBB b" });
    // A token first, then the tree with it.
    REQUIRE(env.requests.size() == 2);
    CHECK(env.requests[0].method == "PUT");
    CHECK(env.requests[0].path == "/latest/api/token");
    CHECK(env.requests[1].path == "/strata");
    bool token = false;
    for (auto const& [name, value] : env.requests[1].headers)
        token = token || (name == "X-metadata-token" && value.size() > 16);
    CHECK(token);
    CHECK(store->counters().no_token == 0);
    // Up with a temporary link-local address, then the metadata's address, its
    // gateway and a route to the service.
    REQUIRE(env.settings.size() == 2);
    CHECK(env.settings[0].address == 0xa9fe0002);
    CHECK(env.settings[0].prefix == 16);
    CHECK(env.settings[1].address == 0x0a000002);
    CHECK(env.settings[1].prefix == 24);
    CHECK(env.settings[1].gateway == 0x0a000001);
    CHECK(env.settings[1].host_routes == std::vector<std::uint32_t> { kMmdsDefaultAddress });
    CHECK(env.address == 0x0a000002);
}

TEST_CASE("without an address in the metadata the temporary one goes, a configured interface keeps its own")
{
    auto store = service(net::MmdsVersion::V1, served({ { "hostname", "h" } }));
    NetEnvironment env(store);
    auto out = fetch_mmds_metadata(env, MmdsOptions {});
    REQUIRE_MESSAGE(out.metadata, out.error);
    CHECK(out.metadata->ipv4_address.empty());
    REQUIRE(env.settings.size() == 2);
    CHECK(env.settings[1].address == 0);
    CHECK_FALSE(env.settings[1].keep_address);
    CHECK(env.address == 0);

    NetEnvironment configured(store);
    configured.address = 0xc0a80105; // set by the kernel's ip=
    out = fetch_mmds_metadata(configured, MmdsOptions {});
    REQUIRE_MESSAGE(out.metadata, out.error);
    REQUIRE(configured.settings.size() == 1);
    CHECK(configured.settings[0].keep_address);
    CHECK(configured.settings[0].host_routes == std::vector<std::uint32_t> { kMmdsDefaultAddress });
    CHECK(configured.address == 0xc0a80105);
}

TEST_CASE("the agent finds no service, waits for a late interface, and uses the address strata.mmds names")
{
    // No service answers: no metadata, and the temporary address is removed again.
    NetEnvironment none(nullptr);
    auto out = fetch_mmds_metadata(none, MmdsOptions {});
    CHECK_FALSE(out.metadata);
    CHECK(out.error.find("no metadata service") != std::string::npos);
    REQUIRE(none.settings.size() == 2);
    CHECK(none.settings[1].address == 0);
    CHECK(none.requests.size() == 1);

    // No interface within the wait.
    NetEnvironment bare(nullptr);
    bare.interfaces.clear();
    MmdsOptions quick;
    quick.wait_for_interface = std::chrono::milliseconds(500);
    out = fetch_mmds_metadata(bare, quick);
    CHECK(out.error == "no network interface");
    CHECK(bare.settings.empty());
    CHECK(bare.sleeps == 5);

    // An interface that appears while the agent waits; a service at another address.
    auto store = service(net::MmdsVersion::V2, served(nlohmann::json::object()));
    NetEnvironment late(store);
    late.interfaces.clear();
    late.appear_after_sleeps = 3;
    late.service_address = 0xa9fe0002; // 169.254.0.2: the temporary address moves to .3
    MmdsOptions elsewhere;
    elsewhere.address = 0xa9fe0002;
    out = fetch_mmds_metadata(late, elsewhere);
    REQUIRE_MESSAGE(out.metadata, out.error);
    CHECK(out.iface == "eth0");
    CHECK(late.settings[0].address == 0xa9fe0003);
    CHECK(out.metadata->instance_id == "i-00aa");

    // A service whose tree is not strata's: EC2's meta-data keys.
    auto ec2 = service(net::MmdsVersion::V2, R"({"latest": {"meta-data": {"instance-id": "i-ec2", "local-hostname": "box"}}})");
    NetEnvironment other(ec2);
    out = fetch_mmds_metadata(other, MmdsOptions {});
    REQUIRE_MESSAGE(out.metadata, out.error);
    CHECK(out.metadata->instance_id == "i-ec2");
    CHECK(out.metadata->hostname == "box");
}

TEST_CASE("hostile answers from the metadata service configure nothing")
{
    auto check_refused = [](std::string const& data, char const* why) {
        auto store = service(net::MmdsVersion::V2, data);
        NetEnvironment env(store);
        auto out = fetch_mmds_metadata(env, MmdsOptions {});
        CHECK_MESSAGE(!out.metadata, why);
        CHECK_MESSAGE(!out.error.empty(), why);
        // Only the temporary address came and went: nothing from the data.
        for (auto const& s : env.settings)
            CHECK_MESSAGE((s.address == 0 || s.address == 0xa9fe0002), why);
        CHECK(env.address == 0);
    };
    check_refused(served({ { "ipv4-address", "10.0.0.2" } }), "no prefix");
    check_refused(served({ { "ipv4-address", "10.0.0.256/24" } }), "an octet over 255");
    check_refused(served({ { "ipv4-address", "10.0.0.2/33" } }), "a prefix over 32");
    check_refused(served({ { "ipv4-address", "10.0.0.02/24" } }), "a leading zero");
    check_refused(served({ { "ipv4-address", "10.0.0.2/24 " } }), "trailing space");
    check_refused(served({ { "ipv4-gateway", "10.0.0.1" } }), "a gateway without an address");
    check_refused(served({ { "ipv4-address", "10.0.0.2/24" }, { "ipv4-gateway", "ten" } }), "a gateway that is no address");
    check_refused(R"({"strata": {"name": "x", "metadata": {}}})", "no instance id");
    check_refused(R"({"strata": {"instance-id": 5}})", "an instance id that is no string");
    check_refused(R"({"strata": {"instance-id": "i-1", "metadata": []}})", "metadata that is no object");
    check_refused(R"({"strata": {"instance-id": "i-1", "metadata": {"hostname": ["a"]}}})", "a hostname that is no string");
    check_refused(R"({"strata": "i-1"})", "a tree that is no object");

    // Replies that are not HTTP, or lie about their length, or are too large.
    auto store = service(net::MmdsVersion::V1, served(nlohmann::json::object()));
    for (auto const& raw : { std::string("garbage"), std::string("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}"),
             std::string("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}"), std::string("HTTP/1.1 200 OK\r\n\r\nnot json"),
             "HTTP/1.1 200 OK\r\n\r\n" + std::string(kMaxMmdsReplyBytes + 1, ' ') }) {
        NetEnvironment env(store);
        env.override_reply = raw;
        auto out = fetch_mmds_metadata(env, MmdsOptions {});
        CHECK_MESSAGE(!out.metadata, raw.substr(0, 40));
        CHECK(env.address == 0);
    }
    // A refusal to configure the interface is reported, not hidden.
    NetEnvironment stuck(store);
    stuck.refuse_configure = "Operation not permitted";
    auto out = fetch_mmds_metadata(stuck, MmdsOptions {});
    CHECK_FALSE(out.metadata);
    CHECK(out.error.find("Operation not permitted") != std::string::npos);
}

TEST_CASE("HTTP replies and requests as the agent reads and writes them")
{
    auto r = parse_http_reply("HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope!extra");
    CHECK(r.status == 401);
    CHECK(r.body == "nope!");
    r = parse_http_reply("HTTP/1.0 200 OK\r\n\r\nuntil close");
    CHECK(r.status == 200);
    CHECK(r.body == "until close");
    CHECK(parse_http_reply("HTTP/1.1 20 OK\r\n\r\n").status == 0);
    CHECK(parse_http_reply("HTTP/2 200 OK\r\n\r\n").status == 0);
    CHECK(parse_http_reply("HTTP/1.1 200 OK\r\nContent-Length: 1234567890\r\n\r\n").status == 0);
    CHECK(parse_http_reply("HTTP/1.1 200 OK\r\n").status == 0);
    auto text = format_http_request(HttpRequest { kMmdsDefaultAddress, "PUT", "/latest/api/token", { { "X-metadata-token-ttl-seconds", "60" } } });
    CHECK(text == "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n");
    CHECK(parse_ipv4("1.2.3.4") == 0x01020304u);
    CHECK_FALSE(parse_ipv4("1.2.3"));
    CHECK_FALSE(parse_ipv4("1.2.3.4.5"));
    CHECK_FALSE(parse_ipv4("1..3.4"));
    CHECK_FALSE(parse_ipv4("1.2.3.1000"));
    CHECK(parse_ipv4_cidr("10.1.2.3/8") == std::pair { 0x0a010203u, 8u });
    CHECK_FALSE(parse_ipv4_cidr("10.1.2.3/0"));
    CHECK_FALSE(parse_ipv4_cidr("10.1.2.3/"));
    CHECK_FALSE(parse_ipv4_cidr("10.1.2.3/08"));
    CHECK_FALSE(parse_ipv4_cidr("10.1.2.3/100"));
}
