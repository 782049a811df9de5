// A VM's disk as the user names it on the command line or in a manifest:
//   --disk NAME[,id=D][,readonly=on][,boot=on][,cache=writeback|unsafe][,scratch=on]
//   --disk path=P,format=raw|strata[,id=D][,readonly=on][,...]
// The first form is a disk in the store; the second a file on the host. Either
// may be rate limited (base/rate_limiter.h): bps=N[K|M|G] (bytes per second) and
// iops=N give buckets of a tenth of a second's worth that refill in 100 ms, so
// a burst lasts at most that long; bw_size=, bw_burst=, bw_refill_ms=, ops_size=,
// ops_burst=, ops_refill_ms= set Firecracker's bucket fields themselves.
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
};

// A bucket that lets `per_second` tokens through each second, in tenths.
TokenBucketConfig bucket_per_second(std::uint64_t per_second);

// Parses one --disk value; `index` gives the default id ("disk0", ...) for files.
[[nodiscard]] Result<DiskConfig> parse_disk_spec(std::string const& spec, unsigned index);
// Checks a VM's disks together: unique ids, at most one boot disk.
[[nodiscard]] Status check_disks(std::vector<DiskConfig> const& disks);
// The canonical spec string of a disk (the inverse of parse_disk_spec).
std::string disk_spec(DiskConfig const& disk);

} // namespace strata
