#include "vmm/net_config.h"

#include "devices/virtio/net/config.h"
#include "devices/virtio/net/tap.h"

#include <cctype>
#include <set>
#include <sstream>

namespace strata {

namespace {

Error usage(std::string const& what, std::string const& why) { return make_error(ErrorKind::Usage, what + ": " + why); }

bool valid_id(std::string const& id)
{
    if (id.empty() || id.size() > 20 || id == "." || id == "..")
        return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    return true;
}

} // namespace

Status check_net(NetConfig const& net, std::string const& what)
{
    if (!valid_id(net.id))
        return usage(what, "id '" + net.id + "' must be 1-20 letters, digits, '-', '_' or '.'");
    if (net.netns_auto && !net.tap.empty())
        return usage(what, "give tap=NAME or netns=auto, not both");
    if (net.tap.empty() && !net.netns_auto)
        return usage(what, "give the host tap (tap=NAME) or netns=auto");
    if (!net.netns_auto && !virtio::net::valid_interface_name(net.tap))
        return usage(what, "'" + net.tap + "' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
    if (!net.mac.empty() && !virtio::net::parse_mac(net.mac))
        return usage(what, "'" + net.mac + "' is not a unicast MAC address like 52:54:00:12:34:56");
    if (auto r = check_rate_limiter(net.rx_limit); !r)
        return usage(what, "rx rate limiter: " + r.error().message);
    if (auto r = check_rate_limiter(net.tx_limit); !r)
        return usage(what, "tx rate limiter: " + r.error().message);
    return ok();
}

Result<NetConfig> parse_net_spec(std::string const& spec, unsigned index)
{
    std::string const what = "--net '" + spec + "'";
    NetConfig net;
    std::stringstream in(spec);
    std::string item;
    std::set<std::string> seen;
    while (std::getline(in, item, ',')) {
        auto eq = item.find('=');
        if (eq == std::string::npos)
            return usage(what, "'" + item + "' is not key=value (tap=NAME[,mac=M][,id=ID])");
        std::string key = item.substr(0, eq);
        std::string value = item.substr(eq + 1);
        if (!seen.insert(key).second)
            return usage(what, key + "= is given twice");
        if (key == "tap")
            net.tap = value;
        else if (key == "mac")
            net.mac = value;
        else if (key == "id")
            net.id = value;
        else if (key == "netns") {
            if (value != "auto")
                return usage(what, "netns= takes only 'auto' (a namespace of the VM's own)");
            net.netns_auto = true;
        } else
            return usage(what, "unknown key '" + key + "' (tap, netns, mac, id)");
    }
    if (net.id.empty())
        net.id = "net" + std::to_string(index);
    STRATA_TRY(check_net(net, what));
    if (!net.mac.empty())
        net.mac = virtio::net::format_mac(*virtio::net::parse_mac(net.mac));
    return net;
}

Status check_nets(std::vector<NetConfig> const& nets)
{
    if (nets.size() > kMaxNets)
        return make_error(ErrorKind::Usage, "at most " + std::to_string(kMaxNets) + " network interfaces per VM");
    std::set<std::string> ids, taps, macs;
    for (auto const& n : nets) {
        STRATA_TRY(check_net(n, "network interface '" + n.id + "'"));
        if (!ids.insert(n.id).second)
            return make_error(ErrorKind::Usage, "two network interfaces have the id '" + n.id + "'");
        if (!n.netns_auto && !taps.insert(n.tap).second)
            return make_error(ErrorKind::Usage, "two network interfaces use the tap '" + n.tap + "'");
        if (!n.mac.empty() && !macs.insert(virtio::net::format_mac(*virtio::net::parse_mac(n.mac))).second)
            return make_error(ErrorKind::Usage, "two network interfaces have the MAC " + n.mac);
    }
    return ok();
}

std::string net_spec(NetConfig const& net)
{
    std::string s = net.netns_auto ? "netns=auto" : "tap=" + net.tap;
    if (!net.mac.empty())
        s += ",mac=" + net.mac;
    s += ",id=" + net.id;
    return s;
}

} // namespace strata
