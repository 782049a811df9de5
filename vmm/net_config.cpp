#include "vmm/net_config.h"

#include "base/ipv4.h"
#include "devices/virtio/net/config.h"
#include "devices/virtio/net/tap.h"

#include <cctype>
#include <set>
#include <sstream>

namespace strata {

namespace {

Error net_usage(std::string const& what, std::string const& why) { return make_error(ErrorKind::Usage, what + ": " + why); }

bool valid_net_id(std::string const& id)
{
    if (id.empty() || id.size() > 20 || id == "." || id == "..")
        return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    return true;
}

// A rate in units per second: digits with an optional K, M or G (powers of 1024).
Result<std::uint64_t> parse_rate(std::string const& what, std::string const& key, std::string const& value)
{
    std::uint64_t n = 0;
    std::size_t i = 0;
    for (; i < value.size() && value[i] >= '0' && value[i] <= '9'; ++i) {
        if (n > (std::uint64_t(1) << 40))
            return net_usage(what, key + "= is too large");
        n = n * 10 + static_cast<std::uint64_t>(value[i] - '0');
    }
    if (i == 0)
        return net_usage(what, key + "= takes a number per second like 10M, not '" + value + "'");
    std::string const suffix = value.substr(i);
    unsigned shift = suffix.empty() ? 0 : suffix == "K" || suffix == "k" ? 10 : suffix == "M" || suffix == "m" ? 20 : suffix == "G" || suffix == "g" ? 30 : 99;
    if (shift == 99)
        return net_usage(what, key + "= takes a number per second with K, M or G, not '" + value + "'");
    if (n == 0)
        return net_usage(what, key + "= must be at least 1 (leave it out for no limit)");
    if (n > (std::uint64_t(1) << (50 - shift)))
        return net_usage(what, key + "= is too large");
    return n << shift;
}

// A rate as a bucket that holds one second's worth and refills in a second.
TokenBucketConfig per_second(std::uint64_t rate) { return TokenBucketConfig { rate, 0, 1000 }; }

std::string rate_text(std::uint64_t rate)
{
    for (auto [shift, suffix] : { std::pair { 30u, "G" }, std::pair { 20u, "M" }, std::pair { 10u, "K" } })
        if (rate % (std::uint64_t(1) << shift) == 0)
            return std::to_string(rate >> shift) + suffix;
    return std::to_string(rate);
}

// The --net keys a limiter is written back as, when it is one net_spec can say.
bool per_second_shape(TokenBucketConfig const& b) { return b.size == 0 || (b.refill_time_ms == 1000 && b.one_time_burst == 0); }

} // namespace

Status check_net(NetConfig const& net, std::string const& what)
{
    if (!valid_net_id(net.id))
        return net_usage(what, "id '" + net.id + "' must be 1-20 letters, digits, '-', '_' or '.'");
    if (net.netns_auto && !net.tap.empty())
        return net_usage(what, "give tap=NAME or netns=auto, not both");
    if (net.tap.empty() && !net.netns_auto)
        return net_usage(what, "give the host tap (tap=NAME) or netns=auto");
    if (!net.netns_auto && !virtio::net::valid_interface_name(net.tap))
        return net_usage(what, "'" + net.tap + "' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
    if (!net.mac.empty() && !virtio::net::parse_mac(net.mac))
        return net_usage(what, "'" + net.mac + "' is not a unicast MAC address like 52:54:00:12:34:56");
    if (auto r = check_rate_limiter(net.rx_limit); !r)
        return net_usage(what, "rx rate limiter: " + r.error().message);
    if (auto r = check_rate_limiter(net.tx_limit); !r)
        return net_usage(what, "tx rate limiter: " + r.error().message);
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
            return net_usage(what, "'" + item + "' is not key=value (tap=NAME[,mac=M][,id=ID])");
        std::string key = item.substr(0, eq);
        std::string value = item.substr(eq + 1);
        if (!seen.insert(key).second)
            return net_usage(what, key + "= is given twice");
        if (key == "tap")
            net.tap = value;
        else if (key == "mac")
            net.mac = value;
        else if (key == "id")
            net.id = value;
        else if (key == "netns") {
            if (value != "auto")
                return net_usage(what, "netns= takes only 'auto' (a namespace of the VM's own)");
            net.netns_auto = true;
        } else if (key == "rx_bps" || key == "tx_bps" || key == "rx_pps" || key == "tx_pps") {
            STRATA_TRY(rate, parse_rate(what, key, value));
            auto& limiter = key[0] == 'r' ? net.rx_limit : net.tx_limit;
            (key[3] == 'b' ? limiter.bandwidth : limiter.ops) = per_second(rate);
        } else
            return net_usage(what, "unknown key '" + key + "' (tap, netns, mac, id, rx_bps, tx_bps, rx_pps, tx_pps)");
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
    auto limit = [&](char const* key, TokenBucketConfig const& b) {
        if (b.size != 0 && per_second_shape(b))
            s += std::string(",") + key + "=" + rate_text(b.size);
    };
    limit("rx_bps", net.rx_limit.bandwidth);
    limit("rx_pps", net.rx_limit.ops);
    limit("tx_bps", net.tx_limit.bandwidth);
    limit("tx_pps", net.tx_limit.ops);
    return s;
}

Status check_mmds(MmdsConfig const& mmds, std::vector<NetConfig> const& nets)
{
    for (auto const& id : mmds.interfaces) {
        bool found = false;
        for (auto const& n : nets)
            found = found || n.id == id;
        if (!found)
            return make_error(ErrorKind::Usage, "the metadata service names network interface '" + id + "', which the VM does not have");
    }
    return ok();
}

Result<MmdsConfig> parse_mmds_spec(std::string const& spec, std::vector<NetConfig> const& nets)
{
    MmdsConfig out;
    std::size_t at = 0;
    bool first = true, named = false;
    while (at <= spec.size()) {
        auto const comma = spec.find(',', at);
        std::string const part = spec.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        at = comma == std::string::npos ? spec.size() + 1 : comma + 1;
        if (first) {
            first = false;
            if (part == "V1" || part == "v1")
                out.v2 = false;
            else if (part == "V2" || part == "v2")
                out.v2 = true;
            else
                return make_error(ErrorKind::Usage, "--mmds: the version must come first, V1 or V2, not '" + part + "'");
            continue;
        }
        if (part.starts_with("ip=")) {
            STRATA_TRY(ip, parse_link_local_ipv4(part.substr(3)));
            out.ipv4 = ip;
        } else if (part.starts_with("iface=")) {
            out.interfaces.push_back(part.substr(6));
            named = true;
        } else {
            return make_error(ErrorKind::Usage, "--mmds: unknown key in '" + part + "' (ip=, iface=)");
        }
    }
    if (!named)
        for (auto const& n : nets)
            out.interfaces.push_back(n.id);
    if (out.interfaces.empty())
        return make_error(ErrorKind::Usage, "--mmds needs a network interface (--net) to serve the metadata service on");
    STRATA_TRY(check_mmds(out, nets));
    return out;
}

} // namespace strata
