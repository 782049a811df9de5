// Rate limits in records (VM records' and instance templates' disks, VM
// records' network interfaces): a
// RateLimiterConfig (base/rate_limiter.h) as Firecracker's API writes one,
//   {"bandwidth": {"size": N, "one_time_burst": N, "refill_time": MS},
//    "ops": {...}}
// with an absent bucket meaning no limit on it, and the name of a rate limit
// group (the rules of disk ids). The parser treats its JSON as hostile: types,
// unknown keys and ranges (check_rate_limiter) are checked.
// Threading: pure functions.
#pragma once

#include "base/rate_limiter.h"
#include "base/result.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace strata {

nlohmann::json record_rate_limiter_json(RateLimiterConfig const& limit);
// `field` names the limiter in error messages ("rate_limiter", "rx_rate_limiter").
[[nodiscard]] Result<RateLimiterConfig> parse_record_rate_limiter(nlohmann::json const& j, std::string_view what,
    std::string_view field = "rate_limiter");
// The limiter in `object`'s `field`; an absent field is no limit.
[[nodiscard]] Result<RateLimiterConfig> parse_record_rate_limiter_field(nlohmann::json const& object, std::string_view what, char const* field);

// Writes "rate_limiter" and "rate_limit_group" into a disk's object, each only
// when set (records without them read as before).
void put_disk_rate_limit(nlohmann::json& disk, RateLimiterConfig const& limit, std::string const& group);
// Reads them back from a disk's object (both optional).
[[nodiscard]] Status get_disk_rate_limit(nlohmann::json const& disk, std::string_view what, RateLimiterConfig& limit, std::string& group);

} // namespace strata
