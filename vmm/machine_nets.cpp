#include "vmm/machine_nets.h"

#include "devices/virtio/net/device.h"
#include "devices/virtio/net/tap.h"
#include "vmm/machine_state.h"
#include "vmm/net_namespace.h"
#include "vmm/prepared_nets.h"
#include "vmm/virtio_slot.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace strata {

namespace {

// STRATA_NET_POLL_US: how long each virtio-net I/O thread polls after a packet
// (NetOptions::poll_us; 0, the default, never). Polling can pay only on a host
// with a core to spare for it: a spinning thread takes a CPU the guest's vCPU
// may need, and bench/net on this project's loaded 2-CPU machines showed no
// gain from it (its ratios there varied more between runs than any setting
// moved them).
unsigned net_poll_us()
{
    char const* text = std::getenv("STRATA_NET_POLL_US");
    if (text == nullptr || *text == '\0')
        return 0;
    unsigned value = 0;
    char const* end = text + std::strlen(text);
    auto [at, err] = std::from_chars(text, end, value);
    if (err != std::errc() || at != end || value > 1'000'000) {
        std::fprintf(stderr, "strata: STRATA_NET_POLL_US='%s' is not a number of microseconds up to 1000000; not polling\n", text);
        return 0;
    }
    return value;
}

} // namespace

struct MachineNets::Net {
    NetConfig config;
    bool mac_configured { false }; // config.mac was given, not made up here
    std::unique_ptr<NetNamespace> own_netns; // netns=auto: deleted after the tap closes
    NetNamespace const* netns { nullptr };   // own_netns, or a prepared one
    std::shared_ptr<PreparedNets const> prepared; // holds a prepared tap and namespace
    std::unique_ptr<virtio::net::NetBackend> tap;
    std::unique_ptr<RateLimiter> rx_limiter, tx_limiter; // outlive the device
    std::unique_ptr<virtio::net::VirtioNet> device;
    std::unique_ptr<VirtioSlot> slot; // destroyed before the device
};

MachineNets::~MachineNets()
{
    // Transports first: destroying one resets its device and joins its I/O thread.
    for (auto& n : m_nets)
        n->slot.reset();
    m_nets.clear();
}

Result<std::unique_ptr<MachineNets>> MachineNets::create(VirtioBuses const& buses, std::vector<NetConfig> const& nets,
    std::uint32_t first_index, std::string& cmdline_extra, MmdsConfig const& mmds, std::shared_ptr<virtio::net::MmdsStore> store,
    std::shared_ptr<PreparedNets const> prepared)
{
    STRATA_TRY(check_nets(nets));
    STRATA_TRY(check_mmds(mmds, nets));
    auto set = std::unique_ptr<MachineNets>(new MachineNets());
    for (auto const& config : nets) {
        auto net = std::make_unique<Net>();
        net->config = config;
        net->mac_configured = !config.mac.empty();
        auto const what = "network interface '" + config.id + "'";
        if (config.netns_auto && prepared && prepared->has(config.id)) {
            net->prepared = prepared;
            net->netns = prepared->netns(config.id);
            net->tap = prepared->backend(config.id);
        } else {
            if (config.netns_auto) {
                auto ns = NetNamespace::create();
                if (!ns)
                    return ns.error().context(what);
                net->own_netns = std::move(ns.value());
                net->netns = net->own_netns.get();
                std::fprintf(stderr, "strata: %s: namespace %s; the guest is %s behind gateway %s there, reached from the host at %s%s\n",
                    what.c_str(), net->netns->name().c_str(), NetNamespace::GuestIp, NetNamespace::GatewayIp,
                    net->netns->guest_address().c_str(), net->netns->nat() ? "" : " (no NAT: iptables and nft are missing)");
            }
            auto tap = net->own_netns ? net->own_netns->open_tap() : virtio::net::Tap::open(config.tap);
            if (!tap)
                return tap.error().context(what);
            net->tap = std::move(tap.value());
        }
        net->rx_limiter = std::make_unique<RateLimiter>(config.rx_limit);
        net->tx_limiter = std::make_unique<RateLimiter>(config.tx_limit);
        virtio::net::NetOptions options;
        options.id = config.id;
        options.rx_limiter = net->rx_limiter.get();
        options.tx_limiter = net->tx_limiter.get();
        options.poll_us = net_poll_us();
        if (store && std::find(mmds.interfaces.begin(), mmds.interfaces.end(), config.id) != mmds.interfaces.end()) {
            options.mmds = store;
            options.mmds_ipv4 = mmds.ipv4;
        }
        options.mac = config.mac.empty() ? virtio::net::random_mac() : *virtio::net::parse_mac(config.mac);
        net->config.mac = virtio::net::format_mac(options.mac);
        STRATA_TRY(device, virtio::net::VirtioNet::create(*net->tap, options));
        net->device = std::move(device);
        auto const index = first_index + static_cast<std::uint32_t>(set->m_nets.size());
        auto slot = attach_virtio(buses, *net->device, index, cmdline_extra);
        if (!slot)
            return slot.error().context(what);
        net->slot = std::move(slot.value());
        set->m_nets.push_back(std::move(net));
    }
    return set;
}

NetConfig const& MachineNets::config(std::size_t i) const { return m_nets.at(i)->config; }
std::string MachineNets::mac(std::size_t i) const { return m_nets.at(i)->config.mac; }
void MachineNets::set_rate_limits(std::size_t i, RateLimiterConfig const& rx, RateLimiterConfig const& tx)
{
    auto& n = *m_nets.at(i);
    n.rx_limiter->update(rx);
    n.tx_limiter->update(tx);
    n.config.rx_limit = rx;
    n.config.tx_limit = tx;
}

NetNamespace const* MachineNets::netns(std::size_t i) const { return m_nets.at(i)->netns; }
virtio::net::VirtioNet& MachineNets::device(std::size_t i) { return *m_nets.at(i)->device; }
VirtioSlot& MachineNets::slot(std::size_t i) { return *m_nets.at(i)->slot; }

void MachineNets::pause_all()
{
    for (auto& n : m_nets)
        n->device->pause();
}

void MachineNets::resume_all()
{
    for (auto& n : m_nets)
        n->device->resume();
}

NetInterfaceState MachineNets::save_state(std::size_t i) const
{
    auto const& n = *m_nets.at(i);
    NetInterfaceState s;
    s.id = n.config.id;
    s.mac = n.device->save_state().mac;
    s.rx = n.rx_limiter->state();
    s.tx = n.tx_limiter->state();
    return s;
}

Status MachineNets::restore_state(std::size_t i, NetInterfaceState const& state)
{
    auto& n = *m_nets.at(i);
    STRATA_TRY(n.device->restore_state(virtio::net::VirtioNet::Snapshot { state.mac }));
    auto const saved = virtio::net::format_mac(state.mac);
    // Compared as addresses: a configured MAC may be written in upper case
    // (the API's guest_mac), and the agent is sent the canonical form.
    auto const configured = virtio::net::parse_mac(n.config.mac);
    auto const wanted = configured ? virtio::net::format_mac(*configured) : saved;
    if (n.mac_configured && wanted != saved)
        m_mac_changes.push_back(MacChange { n.config.id, saved, wanted });
    else
        n.config.mac = saved;
    n.rx_limiter->restore_state(state.rx);
    n.tx_limiter->restore_state(state.tx);
    return ok();
}

Status MachineNets::apply_new_macs()
{
    for (auto const& change : m_mac_changes) {
        auto it = std::find_if(m_nets.begin(), m_nets.end(), [&](auto const& n) { return n->config.id == change.id; });
        if (it == m_nets.end())
            return make_error(ErrorKind::Internal, "network interface '" + change.id + "' is gone");
        STRATA_TRY((*it)->device->set_mac(*virtio::net::parse_mac(change.to)));
    }
    return ok();
}

void MachineNets::guest_moved(MacChange const& change)
{
    auto it = std::find_if(m_nets.begin(), m_nets.end(), [&](auto const& n) { return n->config.id == change.id; });
    auto mac = virtio::net::parse_mac(change.to);
    if (it != m_nets.end() && mac)
        (*it)->device->guest_moved_to(*mac);
}

} // namespace strata
