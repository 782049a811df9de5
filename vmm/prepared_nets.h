// PreparedNets: the host side of a VM's netns=auto interfaces (net_namespace.h),
// made before its VMM is jailed. Making a namespace runs the host's ip and
// iptables and opening its tap joins it; a jailed VMM can do neither (no host
// file system, no capability, a seccomp filter), so `strata vmm --vm --jail`
// makes each namespace and opens each tap first, and the machine then uses the
// open taps (MachineIo::prepared_nets) instead of making its own. A tap's
// descriptor works from any network namespace, so the jailed VMM can leave the
// host's for the shared empty one.
//
// The jail's supervisor, which stays on the host, deletes the namespaces when the
// VMM ends (delete_namespaces); the jailed VMM disowns them (disown), since it
// can no longer reach /run/netns.
// Threading: create, disown and delete_namespaces on one thread, single-threaded
// around the jail's fork; backend and netns from the thread building a machine.
#pragma once

#include "base/result.h"
#include "devices/virtio/net/backend.h"
#include "vmm/net_config.h"

#include <memory>
#include <string>
#include <vector>

namespace strata {

class NetNamespace;
namespace virtio::net {
class Tap;
}

class PreparedNets {
public:
    // Makes a namespace and opens its tap for each netns=auto interface of
    // `nets` (others are left to the machine), logging each as MachineNets does.
    [[nodiscard]] static Result<std::shared_ptr<PreparedNets>> create(std::vector<NetConfig> const& nets);
    ~PreparedNets();
    PreparedNets(PreparedNets const&) = delete;
    PreparedNets& operator=(PreparedNets const&) = delete;

    bool empty() const { return m_nets.empty(); }
    // Whether interface `id` was prepared.
    bool has(std::string const& id) const;
    // A backend over interface `id`'s open tap (the tap stays open when it goes,
    // for a machine built again); null when `id` was not prepared.
    std::unique_ptr<virtio::net::NetBackend> backend(std::string const& id) const;
    NetNamespace const* netns(std::string const& id) const;

    // The jailed VMM's side: the namespaces are the supervisor's to delete.
    void disown();
    // The supervisor's side once the VMM ended: closes the taps and deletes the
    // namespaces (and with them the veth pairs and the rules).
    void delete_namespaces();

private:
    struct Prepared;
    PreparedNets() = default;
    std::vector<std::unique_ptr<Prepared>> m_nets;
};

} // namespace strata
