#include "vmm/disk_config.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>

namespace strata {

namespace {

Error usage(std::string const& spec, std::string const& why)
{
    return make_error(ErrorKind::Usage, "--disk '" + spec + "': " + why);
}

Result<bool> on_off(std::string const& spec, std::string const& key, std::string const& value)
{
    if (value == "on" || value == "true" || value == "1")
        return true;
    if (value == "off" || value == "false" || value == "0")
        return false;
    return usage(spec, key + " must be on or off, not '" + value + "'");
}

bool valid_id(std::string const& id)
{
    // GET_ID returns at most 20 bytes; ids are also path-free names in manifests.
    if (id.empty() || id.size() > 20)
        return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    return id != "." && id != "..";
}

// A count with an optional K, M or G (powers of 1024).
Result<std::uint64_t> count(std::string const& spec, std::string const& key, std::string const& value)
{
    std::uint64_t scale = 1;
    std::string digits = value;
    if (!digits.empty()) {
        char const unit = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
        if (unit == 'K' || unit == 'M' || unit == 'G') {
            scale = unit == 'K' ? 1ULL << 10 : unit == 'M' ? 1ULL << 20 : 1ULL << 30;
            digits.pop_back();
        }
    }
    if (digits.empty() || digits.size() > 15 || digits.find_first_not_of("0123456789") != std::string::npos)
        return usage(spec, key + " must be a number (with K, M or G), not '" + value + "'");
    return std::stoull(digits) * scale;
}

} // namespace

Result<bool> parse_rate_limit_key(std::string const& spec, std::string const& key, std::string const& value, RateLimiterConfig& limit,
    std::string& group)
{
    if (key == "bps" || key == "iops") {
        STRATA_TRY(n, count(spec, key, value));
        (key == "bps" ? limit.bandwidth : limit.ops) = bucket_per_second(n);
        return true;
    }
    if (key == "bw_size" || key == "bw_burst" || key == "bw_refill_ms" || key == "ops_size" || key == "ops_burst" || key == "ops_refill_ms") {
        STRATA_TRY(n, count(spec, key, value));
        auto& bucket = key.starts_with("bw_") ? limit.bandwidth : limit.ops;
        if (key.ends_with("_size"))
            bucket.size = n;
        else if (key.ends_with("_burst"))
            bucket.one_time_burst = n;
        else
            bucket.refill_time_ms = n;
        return true;
    }
    if (key == "rate_limit_group") {
        if (!valid_id(value))
            return usage(spec, "rate_limit_group '" + value + "' must be 1-20 letters, digits, '-', '_' or '.'");
        group = value;
        return true;
    }
    return false;
}

std::string rate_limit_spec(RateLimiterConfig const& limit, std::string const& group)
{
    std::string s;
    for (auto const& [prefix, bucket] : { std::pair<char const*, TokenBucketConfig const*> { "bw", &limit.bandwidth }, { "ops", &limit.ops } }) {
        if (bucket->size == 0)
            continue;
        s += std::string(",") + prefix + "_size=" + std::to_string(bucket->size);
        if (bucket->one_time_burst != 0)
            s += std::string(",") + prefix + "_burst=" + std::to_string(bucket->one_time_burst);
        s += std::string(",") + prefix + "_refill_ms=" + std::to_string(bucket->refill_time_ms);
    }
    if (!group.empty())
        s += ",rate_limit_group=" + group;
    return s;
}

Status share_rate_limit_groups(std::vector<DiskConfig>& disks)
{
    std::map<std::string, RateLimiterConfig> limits;
    for (auto const& d : disks) {
        if (d.rate_limit_group.empty() || d.rate_limit.unlimited())
            continue;
        auto [it, fresh] = limits.emplace(d.rate_limit_group, d.rate_limit);
        if (!fresh && it->second != d.rate_limit)
            return make_error(ErrorKind::Usage, "the disks of rate limit group '" + d.rate_limit_group + "' give different limits (give it once)");
    }
    for (auto& d : disks)
        if (auto it = limits.find(d.rate_limit_group); !d.rate_limit_group.empty() && it != limits.end())
            d.rate_limit = it->second;
    return ok();
}

TokenBucketConfig bucket_per_second(std::uint64_t per_second)
{
    if (per_second == 0)
        return {};
    // A tenth of a second's worth, refilled in 100 ms; below 10 per second one
    // token at a time, refilled in 1000/per_second ms.
    std::uint64_t const size = std::max<std::uint64_t>(1, per_second / 10);
    return TokenBucketConfig { size, 0, std::max<std::uint64_t>(1, (size * 1000 + per_second / 2) / per_second) };
}

Result<DiskConfig> parse_disk_spec(std::string const& spec, unsigned index)
{
    DiskConfig disk;
    std::stringstream in(spec);
    std::string item;
    bool first = true;
    bool has_format = false;
    while (std::getline(in, item, ',')) {
        auto eq = item.find('=');
        if (eq == std::string::npos) {
            if (!first)
                return usage(spec, "'" + item + "' is not key=value");
            disk.store_disk = item;
            first = false;
            continue;
        }
        first = false;
        std::string key = item.substr(0, eq);
        std::string value = item.substr(eq + 1);
        if (key == "path") {
            disk.path = value;
        } else if (key == "format") {
            if (value != "raw" && value != "strata")
                return usage(spec, "format must be raw or strata, not '" + value + "'");
            disk.format = value;
            has_format = true;
        } else if (key == "id") {
            disk.id = value;
        } else if (key == "readonly") {
            STRATA_TRY(v, on_off(spec, key, value));
            disk.read_only = v;
        } else if (key == "boot") {
            STRATA_TRY(v, on_off(spec, key, value));
            disk.boot = v;
        } else if (key == "scratch") {
            STRATA_TRY(v, on_off(spec, key, value));
            disk.scratch = v;
        } else if (key == "cache") {
            if (value == "none")
                disk.cache = DiskCache::None;
            else if (value == "writeback")
                disk.cache = DiskCache::Writeback;
            else if (value == "unsafe")
                disk.cache = DiskCache::Unsafe;
            else
                return usage(spec, "cache must be none, writeback or unsafe, not '" + value + "'");
        } else if (auto limit_key = parse_rate_limit_key(spec, key, value, disk.rate_limit, disk.rate_limit_group); !limit_key) {
            return limit_key.error();
        } else if (limit_key.value()) {
            continue;
        } else {
            return usage(spec, "unknown key '" + key + "'");
        }
    }
    if (disk.store_disk.empty() == disk.path.empty())
        return usage(spec, "give either a store disk name or path=FILE");
    if (!disk.store_disk.empty() && has_format)
        return usage(spec, "format= applies to path= disks only");
    if (disk.id.empty())
        disk.id = disk.store_disk.empty() ? "disk" + std::to_string(index) : disk.store_disk.substr(0, 20);
    if (!valid_id(disk.id))
        return usage(spec, "id '" + disk.id + "' must be 1-20 letters, digits, '-', '_' or '.'");
    if (auto checked = check_rate_limiter(disk.rate_limit); !checked)
        return usage(spec, checked.error().message);
    return disk;
}

Status check_disks(std::vector<DiskConfig> const& disks)
{
    std::set<std::string> ids;
    std::map<std::string, RateLimiterConfig> groups;
    unsigned boot = 0;
    for (auto const& d : disks) {
        if (!ids.insert(d.id).second)
            return make_error(ErrorKind::Usage, "two disks have the id '" + d.id + "'");
        boot += d.boot ? 1 : 0;
        if (d.rate_limit_group.empty())
            continue;
        STRATA_TRY(check_rate_limit_group(d.rate_limit_group));
        // One limiter serves the group: its disks must say the same of it.
        auto [it, fresh] = groups.emplace(d.rate_limit_group, d.rate_limit);
        if (!fresh && it->second != d.rate_limit)
            return make_error(ErrorKind::Usage, "the disks of rate limit group '" + d.rate_limit_group + "' have different limits");
    }
    if (boot > 1)
        return make_error(ErrorKind::Usage, "at most one disk may have boot=on");
    return ok();
}

std::string disk_spec(DiskConfig const& disk)
{
    std::string s = disk.store_disk.empty() ? "path=" + disk.path + ",format=" + disk.format : disk.store_disk;
    s += ",id=" + disk.id;
    if (disk.read_only)
        s += ",readonly=on";
    if (disk.boot)
        s += ",boot=on";
    if (disk.scratch)
        s += ",scratch=on";
    if (disk.cache == DiskCache::Writeback)
        s += ",cache=writeback";
    if (disk.cache == DiskCache::Unsafe)
        s += ",cache=unsafe";
    return s + rate_limit_spec(disk.rate_limit, disk.rate_limit_group);
}

} // namespace strata
