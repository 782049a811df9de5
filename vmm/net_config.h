// A VM's network interface as the user names it on the command line, in the API
// (PUT /network-interfaces/{id}) and in records:
//   --net tap=NAME[,mac=52:54:00:xx:xx:xx][,id=ID][,rx_bps=R][,tx_bps=R][,rx_pps=R][,tx_pps=R]
//   --net netns=auto[,mac=...][,id=ID][,...]
// NAME is an existing tap on the host (devices' Tap attaches, never creates).
// netns=auto makes a namespace of the VM's own with a tap, a veth pair to the
// host and NAT (vmm/net_namespace.h): the guest is 10.0.0.2 behind gateway
// 10.0.0.1 there, whatever other VMs use.
// rx_bps/tx_bps limit the bytes per second to and from the guest, rx_pps/tx_pps
// its packets per second (R: digits with an optional K, M or G, powers of 1024):
// a token bucket of one second's worth that refills in a second
// (base/rate_limiter.h), as PUT /network-interfaces' rx_rate_limiter and
// tx_rate_limiter with refill_time 1000 would make it.
// Without mac= the interface gets a random locally administered address when
// the VM is created. Interfaces are the VM's virtio devices after its disks and
// console, in the order given.
// Threading: plain values and pure functions.
#pragma once

#include "base/rate_limiter.h"
#include "base/result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace strata {

struct NetConfig {
    std::string id;  // unique per VM: 1-20 of A-Z a-z 0-9 - _ .
    std::string tap; // the host tap's name
    std::string mac; // "xx:xx:xx:xx:xx:xx" (canonical lower case), or empty: random
    bool netns_auto { false }; // tap is empty: the VMM makes a namespace and its tap
    RateLimiterConfig rx_limit; // guest-bound traffic; unlimited by default
    RateLimiterConfig tx_limit; // guest-sent traffic
};

inline constexpr std::size_t kMaxNets = 8;

// The metadata service (devices/virtio/net/mmds_store.h), Firecracker's PUT
// /mmds/config: which interfaces serve it, its version and address. Its data
// store is the VMM's (MachineIo::mmds), never part of the configuration.
struct MmdsConfig {
    std::vector<std::string> interfaces; // interface ids; empty: no metadata service
    bool v2 { false };                   // V2: the guest needs a session token
    std::uint32_t ipv4 { 0xa9fea9fe };   // 169.254.169.254, host order
};

// Parses `--mmds V1|V2[,ip=ADDR][,iface=ID]...`; without iface= every interface serves it.
[[nodiscard]] Result<MmdsConfig> parse_mmds_spec(std::string const& spec, std::vector<NetConfig> const& nets);
// Checks that every interface the service names exists.
[[nodiscard]] Status check_mmds(MmdsConfig const& mmds, std::vector<NetConfig> const& nets);

// Parses one --net value; `index` gives the default id ("net0", ...).
[[nodiscard]] Result<NetConfig> parse_net_spec(std::string const& spec, unsigned index);
// Checks one interface's fields (id, tap name, MAC) with `what` naming it in errors.
[[nodiscard]] Status check_net(NetConfig const& net, std::string const& what);
// Checks a VM's interfaces together: each valid, ids, taps and MACs unique, at most kMaxNets.
[[nodiscard]] Status check_nets(std::vector<NetConfig> const& nets);
// The canonical spec string (the inverse of parse_net_spec; a limiter the API
// set with another shape than --net's is left out).
std::string net_spec(NetConfig const& net);

} // namespace strata
