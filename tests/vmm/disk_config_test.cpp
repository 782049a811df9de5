// --disk values (vmm/disk_config.h): rate limit keys and rate limit groups.
#include "vmm/disk_config.h"

#include <doctest/doctest.h>

using namespace strata;

TEST_CASE("--disk rate limits: bps/iops, the bucket keys and the canonical form round-trip")
{
    auto d = parse_disk_spec("data,bps=50M,iops=500", 0);
    REQUIRE_MESSAGE(d, (d ? "" : d.error().message));
    CHECK(d.value().rate_limit.bandwidth == bucket_per_second(50ull << 20));
    CHECK(d.value().rate_limit.ops == bucket_per_second(500));
    auto back = parse_disk_spec(disk_spec(d.value()), 0);
    REQUIRE(back);
    CHECK(back.value().rate_limit == d.value().rate_limit);

    auto raw = parse_disk_spec("data,bw_size=1000,bw_burst=5000,bw_refill_ms=10,rate_limit_group=g1", 0);
    REQUIRE(raw);
    CHECK(raw.value().rate_limit.bandwidth == TokenBucketConfig { 1000, 5000, 10 });
    CHECK(raw.value().rate_limit_group == "g1");
    CHECK(parse_disk_spec(disk_spec(raw.value()), 0).value().rate_limit_group == "g1");

    CHECK_FALSE(parse_disk_spec("data,bw_size=1000", 0));           // a size needs a refill time
    CHECK_FALSE(parse_disk_spec("data,bps=fast", 0));
    CHECK_FALSE(parse_disk_spec("data,rate_limit_group=a/b", 0));
    CHECK_FALSE(parse_disk_spec("data,rate_limit_group=", 0));
    CHECK_FALSE(parse_disk_spec("data,rate_limit_group=" + std::string(21, 'g'), 0));
}

TEST_CASE("rate limit groups: one limit per group, given once and shared")
{
    std::vector<DiskConfig> disks { parse_disk_spec("a,rate_limit_group=g,bps=10M", 0).value(), parse_disk_spec("b,rate_limit_group=g", 1).value(),
        parse_disk_spec("c,bps=1M", 2).value() };
    // Before sharing, b says nothing of g's limit while a does: not one limit.
    CHECK_FALSE(check_disks(disks));
    REQUIRE(share_rate_limit_groups(disks));
    CHECK(disks[1].rate_limit == disks[0].rate_limit);
    CHECK(disks[2].rate_limit.bandwidth == bucket_per_second(1 << 20));
    CHECK(check_disks(disks));

    std::vector<DiskConfig> clash { parse_disk_spec("a,rate_limit_group=g,bps=10M", 0).value(),
        parse_disk_spec("b,rate_limit_group=g,bps=20M", 1).value() };
    auto shared = share_rate_limit_groups(clash);
    REQUIRE_FALSE(shared);
    CHECK(shared.error().message.find("'g'") != std::string::npos);
    CHECK_FALSE(check_disks(clash));
}
