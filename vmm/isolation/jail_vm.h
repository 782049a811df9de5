// What a stored VM's jail (jail.h) holds and limits, from its configuration:
// the paths `strata vmm --vm NAME` opens once jailed, and the cgroup's limits.
//
//  - /dev/kvm, /dev/urandom and /dev/null; /dev/net/tun (and CAP_NET_ADMIN)
//    when the VM has interfaces whose taps the VMM opens itself (not netns=auto
//    ones prepared before the jail);
//  - the VM's runtime folder (sockets, serial log, pid file, lock), writable;
//  - the store folder, writable: the VMM opens its disks' layers there, takes the
//    store's and the records' locks, and captures add layers, manifests, records
//    and the VM's saved state; its artifacts/ folder (boot artifacts) read-only;
//  - disks that are host files (`path`), writable unless read-only;
//  - for a lazily pulled disk, /etc and /usr/share/ca-certificates read-only
//    (name resolution and TLS to its registry).
// The VMM leaves the host's network namespace unless it attaches host taps
// (tap=NAME) or has a lazily pulled disk.
// Memory is the guest's plus kJailMemoryOverhead; CPU is one core per vCPU plus
// one for the API and device threads; PIDs are the vCPUs plus kJailThreadsSpare.
// RLIMIT_FSIZE is twice the largest disk or guest memory plus 1 GiB (a layer
// holds its disk's data and metadata; a saved state holds the guest's memory).
// Threading: pure, reads the store's manifests.
#pragma once

#include "base/result.h"
#include "store/store.h"
#include "vmm/isolation/jail.h"
#include "vmm/machine_config.h"
#include "vmm/runtime_dir.h"

namespace strata {

inline constexpr std::uint64_t kJailMemoryOverhead = 384ull << 20;
inline constexpr std::uint64_t kJailThreadsSpare = 64;

struct JailOptions {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    // The VM's netns=auto interfaces have their namespaces made and taps open
    // before the jail (prepared_nets.h): they need neither /dev/net/tun nor
    // CAP_NET_ADMIN nor the host's network namespace.
    bool netns_auto_prepared { false };
};

// An unconfigured VMM's jail (`strata vmm --api-socket S --jail`), Firecracker's
// way: the API configures what the jail holds, so every file it names (boot
// files, drives) must be put in the socket's folder `dir`, bound writable with
// the devices (/dev/net/tun too: interfaces may be added). No memory or CPU
// limit (the VM is not configured yet); PIDs: the most vCPUs plus the spare.
[[nodiscard]] JailSpec jail_spec_for_api(std::string const& dir, JailOptions const& options);

[[nodiscard]] Result<JailSpec> jail_spec_for_vm(Store& store, MachineConfig const& config, RuntimePaths const& paths,
    JailOptions const& options);

} // namespace strata
