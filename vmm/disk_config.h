// A VM's disk as the user names it on the command line or in a manifest:
//   --disk NAME[,id=D][,readonly=on][,boot=on][,cache=writeback|unsafe][,scratch=on]
//   --disk path=P,format=raw|strata[,id=D][,readonly=on][,...]
// The first form is a disk in the store; the second a file on the host. Either
// may be rate limited (base/rate_limiter.h): bps=N[K|M|G] (bytes per second) and
// iops=N give buckets of a tenth of a second's worth that refill in 100 ms, so
// a burst lasts at most that long; bw_size=, bw_burst=, bw_refill_ms=, ops_size=,
// ops_burst=, ops_refill_ms= set Firecracker's bucket fields themselves.
// rate_limit_group=G puts the disk in a rate limit group (Cloud Hypervisor's):
// the VM's disks of one group share one limiter, so their requests together stay
// within its rate. The group's limit may be given on any of its disks; where
// more than one gives it, they must agree (share_rate_limit_groups).
// Threading: plain values and pure functions.
#pragma once

#include "base/rate_limiter.h"
#include "base/result.h"

#include <string>
#include <vector>

namespace strata {

enum class DiskCache {
    None,      // O_DIRECT: no host page cache (the default)
    Writeback, // the host page cache; guest flushes reach stable storage
    Unsafe,    // the host page cache; see disk_config.cpp for how flushes are treated
};

struct DiskConfig {
    std::string store_disk; // a disk in the store, or empty
    std::string path;       // a host file, or empty
    std::string format { "raw" }; // for path: raw or strata
    std::string id;         // the virtio-blk serial (GET_ID); unique per VM
    bool read_only { false };
    bool boot { false };
    bool scratch { false };
    DiskCache cache { DiskCache::None };
    // For a store disk: the VM (in the store) whose VMM opens it, so that the
    // VM's own disks open while it is recorded as suspended (Store::open_disk).
    std::string owner_vm;
    RateLimiterConfig rate_limit;
    std::string rate_limit_group {}; // empty: a limiter of the disk's own
};

// A bucket that lets `per_second` tokens through each second, in tenths.
TokenBucketConfig bucket_per_second(std::uint64_t per_second);

// The rate limit keys of a --disk value (bps=, iops=, bw_*=, ops_*=,
// rate_limit_group=), shared by every form that takes them (run, vms create,
// templates): true when `key` is one of them and was applied; false when it is
// not one of them; an error when its value is bad. Check the whole limit with
// check_rate_limiter once every key is read.
[[nodiscard]] Result<bool> parse_rate_limit_key(std::string const& spec, std::string const& key, std::string const& value,
    RateLimiterConfig& limit, std::string& group);
// The keys that give `limit` and `group` back, each with a leading comma
// (",bw_size=...,bw_refill_ms=...,rate_limit_group=g"); empty for no limit.
std::string rate_limit_spec(RateLimiterConfig const& limit, std::string const& group);
// check_rate_limit_group (a group's name) is base/rate_limiter.h's.
// Gives every disk of a rate limit group the group's limit (the one its disks
// give; disks that give none take it). Usage error when two disks of a group
// give different limits.
[[nodiscard]] Status share_rate_limit_groups(std::vector<DiskConfig>& disks);

// Parses one --disk value; `index` gives the default id ("disk0", ...) for files.
[[nodiscard]] Result<DiskConfig> parse_disk_spec(std::string const& spec, unsigned index);
// Checks a VM's disks together: unique ids, at most one boot disk, one limit
// per rate limit group.
[[nodiscard]] Status check_disks(std::vector<DiskConfig> const& disks);
// The canonical spec string of a disk (the inverse of parse_disk_spec).
std::string disk_spec(DiskConfig const& disk);

} // namespace strata
