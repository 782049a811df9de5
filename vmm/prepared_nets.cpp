// The netns=auto interfaces made before the jail (prepared_nets.h).
#include "vmm/prepared_nets.h"

#include "devices/virtio/net/tap.h"
#include "vmm/net_namespace.h"

#include <cstdio>

namespace strata {

struct PreparedNets::Prepared {
    std::string id;
    std::unique_ptr<NetNamespace> netns;
    std::shared_ptr<virtio::net::Tap> tap;
};

namespace {

// The machine's view of a prepared tap: every call goes to the tap, which
// outlives the machine (the tap closes with PreparedNets, not with the device).
class PreparedTap final : public virtio::net::NetBackend {
public:
    explicit PreparedTap(std::shared_ptr<virtio::net::Tap> tap)
        : m_tap(std::move(tap))
    {
    }
    int fd() const override { return m_tap->fd(); }
    Result<std::size_t> receive(std::span<std::byte> buf) override { return m_tap->receive(buf); }
    Result<std::size_t> receive_into(std::span<iovec const> pieces) override { return m_tap->receive_into(pieces); }
    Result<bool> send(std::span<iovec const> packet) override { return m_tap->send(packet); }
    Status set_offloads(virtio::net::Offloads offloads) override { return m_tap->set_offloads(offloads); }

private:
    std::shared_ptr<virtio::net::Tap> m_tap;
};

} // namespace

Result<std::shared_ptr<PreparedNets>> PreparedNets::create(std::vector<NetConfig> const& nets)
{
    auto set = std::shared_ptr<PreparedNets>(new PreparedNets());
    for (auto const& config : nets) {
        if (!config.netns_auto)
            continue;
        auto const what = "network interface '" + config.id + "'";
        auto p = std::make_unique<Prepared>();
        p->id = config.id;
        auto ns = NetNamespace::create();
        if (!ns)
            return ns.error().context(what); // the namespaces made so far go with `set`
        p->netns = std::move(ns.value());
        std::fprintf(stderr, "strata: %s: namespace %s; the guest is %s behind gateway %s there, reached from the host at %s%s\n",
            what.c_str(), p->netns->name().c_str(), NetNamespace::GuestIp, NetNamespace::GatewayIp, p->netns->guest_address().c_str(),
            p->netns->nat() ? "" : " (no NAT: iptables and nft are missing)");
        auto tap = p->netns->open_tap();
        if (!tap) {
            set->m_nets.push_back(std::move(p));
            return tap.error().context(what);
        }
        p->tap = std::move(tap.value());
        set->m_nets.push_back(std::move(p));
    }
    return set;
}

PreparedNets::~PreparedNets() = default;

bool PreparedNets::has(std::string const& id) const { return netns(id) != nullptr; }

std::unique_ptr<virtio::net::NetBackend> PreparedNets::backend(std::string const& id) const
{
    for (auto const& p : m_nets)
        if (p->id == id && p->tap)
            return std::make_unique<PreparedTap>(p->tap);
    return nullptr;
}

NetNamespace const* PreparedNets::netns(std::string const& id) const
{
    for (auto const& p : m_nets)
        if (p->id == id)
            return p->netns.get();
    return nullptr;
}

void PreparedNets::disown()
{
    for (auto& p : m_nets)
        p->netns->disown();
}

void PreparedNets::delete_namespaces()
{
    // Taps first: the namespace's tap goes with it only once nothing holds it.
    for (auto& p : m_nets)
        p->tap.reset();
    m_nets.clear();
}

} // namespace strata
