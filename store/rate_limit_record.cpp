#include "store/rate_limit_record.h"

#include "store/record_files.h"
#include "store/vm_record.h"

namespace strata {

using nlohmann::json;
using namespace record_json;

namespace {

json bucket_json(TokenBucketConfig const& b)
{
    return json { { "size", b.size }, { "one_time_burst", b.one_time_burst }, { "refill_time", b.refill_time_ms } };
}

// A bucket as bucket_json writes it: written only with a size, so a present
// bucket needs a size and a refill time of at least 1.
Result<TokenBucketConfig> parse_bucket(json const& j, std::string_view what, std::string const& field)
{
    if (!j.is_object())
        return bad(what, "'" + field + "' is not an object");
    for (auto const& [key, value] : j.items())
        if (key != "size" && key != "one_time_burst" && key != "refill_time")
            return bad(what, "'" + field + "' has an unknown key '" + key + "' (size, one_time_burst, refill_time)");
    constexpr std::uint64_t max = std::uint64_t(1) << 50;
    TokenBucketConfig b;
    STRATA_TRY(size, uint_field(j, "size", true, 1, max));
    STRATA_TRY(burst, uint_field(j, "one_time_burst", false, 0, max));
    STRATA_TRY(refill, uint_field(j, "refill_time", true, 1, std::uint64_t(1) << 32));
    b.size = size;
    b.one_time_burst = burst;
    b.refill_time_ms = refill;
    return b;
}

} // namespace

json record_rate_limiter_json(RateLimiterConfig const& limit)
{
    json j = json::object();
    if (limit.bandwidth.size != 0)
        j["bandwidth"] = bucket_json(limit.bandwidth);
    if (limit.ops.size != 0)
        j["ops"] = bucket_json(limit.ops);
    return j;
}

Result<RateLimiterConfig> parse_record_rate_limiter(json const& j, std::string_view what, std::string_view field)
{
    std::string const name(field);
    if (!j.is_object())
        return bad(what, "'" + name + "' is not an object");
    RateLimiterConfig limit;
    for (auto const& [key, value] : j.items()) {
        if (key == "bandwidth") {
            STRATA_TRY(b, parse_bucket(value, what, name + ".bandwidth"));
            limit.bandwidth = b;
        } else if (key == "ops") {
            STRATA_TRY(b, parse_bucket(value, what, name + ".ops"));
            limit.ops = b;
        } else {
            return bad(what, "'" + name + "' has an unknown key '" + key + "' (bandwidth, ops)");
        }
    }
    if (auto checked = check_rate_limiter(limit); !checked)
        return bad(what, "'" + name + "': " + checked.error().message);
    return limit;
}

Result<RateLimiterConfig> parse_record_rate_limiter_field(json const& object, std::string_view what, char const* field)
{
    auto it = object.find(field);
    if (it == object.end())
        return RateLimiterConfig {};
    return parse_record_rate_limiter(*it, what, field);
}

void put_disk_rate_limit(json& disk, RateLimiterConfig const& limit, std::string const& group)
{
    if (!limit.unlimited())
        disk["rate_limiter"] = record_rate_limiter_json(limit);
    if (!group.empty())
        disk["rate_limit_group"] = group;
}

Status get_disk_rate_limit(json const& disk, std::string_view what, RateLimiterConfig& limit, std::string& group)
{
    limit = {};
    group.clear();
    STRATA_TRY(parsed, parse_record_rate_limiter_field(disk, what, "rate_limiter"));
    limit = parsed;
    STRATA_TRY(name, string_field(disk, "rate_limit_group", false, 20));
    if (!name.empty() && !check_disk_id(name))
        return bad(what, "'rate_limit_group' must be 1-20 letters, digits, '-', '_' or '.'");
    group = name;
    return ok();
}

} // namespace strata
