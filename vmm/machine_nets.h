// MachineNets: a VM's virtio-net interfaces — for each, the host tap (opened
// when the machine is built, closed with it, unless it was prepared before a
// jail: prepared_nets.h), the VirtioNet device and its
// VirtioSlot (transport and interrupt, vmm/virtio_slot.h). Interfaces are the
// VM's virtio devices after the disks and the console, so adding one changes
// neither the disks' nor the console's place.
//
// Teardown order matters: slots first (the transport resets the device and stops
// its I/O thread), then devices, then taps; Net's member order encodes that.
// Threading: created on the main thread before vCPUs start; metrics and
// guest_moved() from any thread.
#pragma once

#include "base/result.h"
#include "devices/bus.h"
#include "devices/guest_memory.h"
#include "vmm/machine_config.h"
#include "vmm/kvm/vm.h"

#include <memory>
#include <string>
#include <vector>

namespace strata {

struct VirtioSlot;
struct NetInterfaceState;
class NetNamespace;
class PreparedNets;
struct VirtioBuses;
namespace virtio::net {
class VirtioNet;
class MmdsStore;
struct NetMetrics;
}

class MachineNets {
public:
    // Opens every tap and attaches each interface as virtio device first_index + i.
    // An interface without a MAC gets a random one (mac() says which).
    // The interfaces `mmds` names serve the metadata service of `store` (when
    // there is one). A netns=auto interface that `prepared` holds uses its
    // namespace and open tap (prepared_nets.h); any other makes its own.
    [[nodiscard]] static Result<std::unique_ptr<MachineNets>> create(VirtioBuses const& buses,
        std::vector<NetConfig> const& nets, std::uint32_t first_index, std::string& cmdline_extra,
        MmdsConfig const& mmds = {}, std::shared_ptr<virtio::net::MmdsStore> store = {},
        std::shared_ptr<PreparedNets const> prepared = {});
    ~MachineNets();

    std::size_t count() const { return m_nets.size(); }
    NetConfig const& config(std::size_t i) const;
    // The MAC the guest sees, "xx:xx:xx:xx:xx:xx".
    std::string mac(std::size_t i) const;
    virtio::net::VirtioNet& device(std::size_t i);
    // Replaces interface i's limiters (each bucket starts full); thread-safe.
    void set_rate_limits(std::size_t i, RateLimiterConfig const& rx, RateLimiterConfig const& tx);
    // The namespace made for interface i (netns=auto), or null.
    NetNamespace const* netns(std::size_t i) const;
    VirtioSlot& slot(std::size_t i);

    // Running-state snapshots (machine_snapshot.cpp): every device's I/O thread
    // parked while the machine's state and RAM are saved; interface i's state
    // beyond its transport (MAC, limiter levels); and that state put back into
    // a freshly created interface before its transport is restored. An
    // interface configured without a MAC then presents the saved one, the one
    // the guest's driver uses, and config() records it. One configured with
    // another MAC (a clone of the snapshot with a network identity of its own)
    // keeps that one: restore_state records the change, and apply_new_macs(),
    // called once the transports are restored, puts it in the device's config
    // space (VirtioNet::set_mac); moving the guest's interface to it is the
    // guest agent's work (Machine::restore).
    void pause_all();
    void resume_all();
    NetInterfaceState save_state(std::size_t i) const;
    [[nodiscard]] Status restore_state(std::size_t i, NetInterfaceState const& state);
    struct MacChange {
        std::string id;
        std::string from; // the MAC the restored driver uses, "xx:xx:xx:xx:xx:xx"
        std::string to;   // the configured one
    };
    std::vector<MacChange> const& mac_changes() const { return m_mac_changes; }
    [[nodiscard]] Status apply_new_macs();
    // The guest agent moved the guest's interface of `change` to its new MAC
    // (or found it there): a snapshot saves that MAC from now on, where until
    // then it saves the one the guest's driver read, so that a clone of this
    // clone asks the agent to move the interface the guest really has.
    // Thread-safe.
    void guest_moved(MacChange const& change);

private:
    struct Net;
    MachineNets() = default;
    std::vector<std::unique_ptr<Net>> m_nets;
    std::vector<MacChange> m_mac_changes;
};

} // namespace strata
