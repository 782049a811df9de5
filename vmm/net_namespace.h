// NetNamespace: a network namespace of its own for one VM interface (`--net
// netns=auto`), so that clones which all believe they are 10.0.0.2 coexist (the
// recipe Firecracker documents for clones, done for the user):
//
//   root namespace                      namespace strata-net-S
//   stnS (10.200.x.y+1/30) <-- veth --> veth0 (10.200.x.y+2/30), default route via stnS
//                                       tap0 (10.0.0.1/24: the guest's gateway)
//                                       NAT: from 10.0.0.0/24 out of veth0 masqueraded;
//                                       to 10.200.x.y+2 on veth0 DNAT'ed to 10.0.0.2
//
// so the host reaches the guest at guest_address() and the guest reaches the host
// at host_address(). Slot S (0..16383) picks the /30 in 10.200.0.0/16; a free one
// is found by trying to create the namespace. The root namespace is left as it
// is beyond the veth end: no forwarding or NAT there, so the guest reaches the
// host, not the outside world (a user who wants that adds forwarding and NAT on
// the host for 10.200.0.0/16). NAT uses iptables, else nft; with neither the
// namespace is still made and a warning says the guest is reachable only from
// inside it.
//
// The namespace (and with it the veth pair, the tap and the rules) is deleted
// when the object goes, unless it was disowned (a jailed VMM leaves that to its
// supervisor, prepared_nets.h); a VMM killed with SIGKILL leaves it behind (`ip
// netns list` shows strata-net-*).
// Threading: create and destroy on one thread; open_tap runs a short-lived
// thread that joins the namespace, so the caller's own namespace never changes.
#pragma once

#include "base/result.h"
#include "devices/virtio/net/tap.h"

#include <memory>
#include <string>

namespace strata {

class NetNamespace {
public:
    [[nodiscard]] static Result<std::unique_ptr<NetNamespace>> create();
    ~NetNamespace();
    NetNamespace(NetNamespace const&) = delete;
    NetNamespace& operator=(NetNamespace const&) = delete;

    std::string const& name() const { return m_name; }
    std::string const& host_address() const { return m_host_address; }
    // Where the host reaches the guest (DNAT to 10.0.0.2 inside).
    std::string const& guest_address() const { return m_guest_address; }
    bool nat() const { return m_nat; }
    // Opens the namespace's tap0.
    [[nodiscard]] Result<std::unique_ptr<virtio::net::Tap>> open_tap() const;
    // Leaves the namespace in place when this object goes: another process
    // (a jail's supervisor) deletes it.
    void disown() { m_owned = false; }

    static constexpr char const* GuestIp = "10.0.0.2";
    static constexpr char const* GatewayIp = "10.0.0.1";

private:
    NetNamespace() = default;
    [[nodiscard]] Status setup(unsigned slot);

    std::string m_name;
    std::string m_veth;
    std::string m_host_address;
    std::string m_guest_address;
    bool m_nat { false };
    bool m_owned { true };
};

} // namespace strata
