// --net and --mmds as strata parses them (vmm/net_config.h), and what a stored
// VM's metadata service serves and its kernel command line says
// (vmm/vm_config.h): every refusal leaves nothing half-parsed.
#include "store/vm_record.h"
#include "vmm/net_config.h"
#include "vmm/vm_config.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace strata;

TEST_CASE("--net rate limit keys: per-second buckets, canonical text, hostile values refused")
{
    auto n = parse_net_spec("tap=tap0,rx_bps=10M,tx_bps=123,rx_pps=2K,tx_pps=7", 0);
    REQUIRE_MESSAGE(n, (n ? "" : n.error().message));
    CHECK(n.value().rx_limit.bandwidth == TokenBucketConfig { 10ULL << 20, 0, 1000 });
    CHECK(n.value().tx_limit.bandwidth == TokenBucketConfig { 123, 0, 1000 });
    CHECK(n.value().rx_limit.ops == TokenBucketConfig { 2048, 0, 1000 });
    CHECK(n.value().tx_limit.ops == TokenBucketConfig { 7, 0, 1000 });
    CHECK(net_spec(n.value()) == "tap=tap0,id=net0,rx_bps=10M,rx_pps=2K,tx_bps=123,tx_pps=7");
    // The canonical text parses back to the same interface.
    auto again = parse_net_spec(net_spec(n.value()), 5);
    REQUIRE(again);
    CHECK(again.value().rx_limit == n.value().rx_limit);
    CHECK(again.value().tx_limit == n.value().tx_limit);
    // Without the keys: unlimited, as before.
    auto plain = parse_net_spec("netns=auto", 1);
    REQUIRE(plain);
    CHECK(plain.value().rx_limit.unlimited());
    CHECK(plain.value().tx_limit.unlimited());
    CHECK(net_spec(plain.value()) == "netns=auto,id=net1");

    for (char const* bad : { "tap=t,rx_bps=", "tap=t,rx_bps=0", "tap=t,rx_bps=-5", "tap=t,rx_bps=10T", "tap=t,rx_bps=1.5M",
             "tap=t,rx_bps=M", "tap=t,rx_bps=99999999999999999999999", "tap=t,rx_bps=2000000G", "tap=t,rx_bps=1,rx_bps=2",
             "tap=t,rx_bits=5", "tap=t,tx_pps=ten" }) {
        auto r = parse_net_spec(bad, 0);
        CHECK_MESSAGE(!r, bad);
        if (!r)
            CHECK(r.error().kind == ErrorKind::Usage);
    }
}

TEST_CASE("a stored VM's metadata service: the served tree and the command line that points at it")
{
    VmRecord vm;
    vm.name = "web";
    vm.instance_id = "i-00112233aabbccdd";
    vm.metadata = { { "hostname", "web-1" }, { "ipv4-address", "10.0.0.2/24" }, { "odd", "\"quoted\"\nline" } };
    auto served = nlohmann::json::parse(mmds_data_for(vm));
    CHECK(served["strata"]["instance-id"] == "i-00112233aabbccdd");
    CHECK(served["strata"]["name"] == "web");
    CHECK(served["strata"]["metadata"]["hostname"] == "web-1");
    CHECK(served["strata"]["metadata"]["odd"] == "\"quoted\"\nline");
    CHECK(served["latest"]["meta-data"]["instance-id"] == "i-00112233aabbccdd");
    CHECK(served["latest"]["meta-data"]["local-hostname"] == "web-1");
    VmRecord old = vm;
    old.instance_id.clear();
    old.metadata.clear();
    auto served_old = nlohmann::json::parse(mmds_data_for(old));
    CHECK(served_old["strata"]["instance-id"] == "web"); // records older than instance ids
    CHECK(!served_old["latest"]["meta-data"].contains("local-hostname"));
    CHECK(served_old["strata"]["metadata"].is_object()); // empty, but what the agent expects

    // Without a service the command line carries the metadata; with one it names
    // the service, and SSH keys too long for the command line are fine.
    auto arg = guest_metadata_arg(vm);
    REQUIRE(arg);
    CHECK(arg.value().starts_with("strata.meta="));
    vm.spec.nets = { VmNet { "net0", "", "", true } };
    vm.spec.mmds = VmMmds { "V2", "169.254.170.2", { "net0" } };
    vm.metadata["ssh-authorized-keys"] = std::string(3000, 'k');
    auto with = guest_metadata_arg(vm);
    REQUIRE(with);
    CHECK(with.value() == "strata.mmds=169.254.170.2");
}
