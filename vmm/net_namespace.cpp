#include "vmm/net_namespace.h"

#include "base/fd.h"
#include "base/host_tool.h"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <random>
#include <sched.h>
#include <cstring>
#include <sys/mount.h>
#include <thread>
#include <unistd.h>

namespace strata {

namespace {

constexpr unsigned Slots = 16384; // /30s in 10.200.0.0/16
constexpr unsigned Tries = 64;

std::string address(unsigned slot, unsigned host)
{
    unsigned const base = slot * 4 + host;
    return "10.200." + std::to_string(base >> 8) + "." + std::to_string(base & 255);
}

// Runs a tool (found in PATH or the sbin folders) and fails with its own words.
Status run(std::vector<std::string> argv, std::string_view package)
{
    STRATA_TRY(tool, find_host_tool(argv[0], package));
    argv[0] = tool;
    STRATA_TRY(result, run_host_tool(argv));
    if (!result.succeeded()) {
        std::string joined;
        for (auto const& a : argv)
            joined += (joined.empty() ? "" : " ") + a;
        std::string out = result.output;
        while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
            out.pop_back();
        auto kind = out.find("File exists") != std::string::npos ? ErrorKind::Exists
            : out.find("Operation not permitted") != std::string::npos ? ErrorKind::Permission
                                                                         : ErrorKind::Io;
        return make_error(kind, joined + ": " + out);
    }
    return ok();
}

Status ip(std::vector<std::string> args)
{
    args.insert(args.begin(), "ip");
    return run(std::move(args), "iproute2");
}

// Runs fn on a thread that has joined namespace `name`.
template<typename F>
auto in_namespace(std::string const& name, F fn) -> decltype(fn())
{
    decltype(fn()) out = make_error(ErrorKind::Internal, "not run");
    std::thread t([&] {
        Fd ns(::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
        if (!ns.valid()) {
            out = errno_error("open network namespace '" + name + "'");
            return;
        }
        if (::setns(ns.get(), CLONE_NEWNET) != 0) {
            out = errno_error("join network namespace '" + name + "'");
            return;
        }
        out = fn();
    });
    t.join();
    return out;
}

} // namespace

Result<std::unique_ptr<NetNamespace>> NetNamespace::create()
{
    std::random_device random;
    unsigned const start = random() % Slots;
    for (unsigned i = 0; i < Tries; ++i) {
        unsigned const slot = (start + i) % Slots;
        auto ns = std::unique_ptr<NetNamespace>(new NetNamespace());
        std::string const name = "strata-net-" + std::to_string(slot);
        auto made = ip({ "netns", "add", name });
        if (!made && made.error().kind == ErrorKind::Exists)
            continue; // another VM has this slot
        if (!made)
            return made.error().context("--net netns=auto");
        ns->m_name = name;
        if (auto r = ns->setup(slot); !r)
            return r.error().context("--net netns=auto (namespace " + name + ")"); // the destructor deletes it
        return ns;
    }
    return make_error(ErrorKind::Busy, "--net netns=auto: no free namespace slot after " + std::to_string(Tries) + " tries");
}

Status NetNamespace::setup(unsigned slot)
{
    m_veth = "stn" + std::to_string(slot);
    m_host_address = address(slot, 1);
    m_guest_address = address(slot, 2);
    std::string const& ns = m_name;
    // A veth end left from a VMM that was killed goes first.
    (void)ip({ "link", "del", m_veth });
    STRATA_TRY(ip({ "link", "add", m_veth, "type", "veth", "peer", "name", "veth0", "netns", ns }));
    STRATA_TRY(ip({ "addr", "add", m_host_address + "/30", "dev", m_veth }));
    STRATA_TRY(ip({ "link", "set", m_veth, "up" }));
    STRATA_TRY(ip({ "-n", ns, "link", "set", "lo", "up" }));
    STRATA_TRY(ip({ "-n", ns, "addr", "add", m_guest_address + "/30", "dev", "veth0" }));
    STRATA_TRY(ip({ "-n", ns, "link", "set", "veth0", "up" }));
    STRATA_TRY(ip({ "-n", ns, "tuntap", "add", "tap0", "mode", "tap" }));
    STRATA_TRY(ip({ "-n", ns, "addr", "add", std::string(GatewayIp) + "/24", "dev", "tap0" }));
    STRATA_TRY(ip({ "-n", ns, "link", "set", "tap0", "up" }));
    STRATA_TRY(ip({ "-n", ns, "route", "add", "default", "via", m_host_address }));
    // Forwarding inside the namespace only: /proc/sys/net belongs to the namespace
    // of whoever opens it.
    STRATA_TRY(in_namespace(ns, []() -> Status {
        Fd f(::open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC));
        if (!f.valid() || ::write(f.get(), "1\n", 2) != 2)
            return errno_error("enable forwarding in the namespace");
        return ok();
    }));

    std::string const inside = std::string(GuestIp);
    if (find_host_tool("iptables", "iptables")) {
        STRATA_TRY(ip({ "netns", "exec", ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "veth0", "-s", "10.0.0.0/24", "-j", "MASQUERADE" }));
        STRATA_TRY(ip({ "netns", "exec", ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "veth0", "-d", m_guest_address, "-j", "DNAT",
            "--to-destination", inside }));
        m_nat = true;
    } else if (find_host_tool("nft", "nftables")) {
        STRATA_TRY(ip({ "netns", "exec", ns, "nft", "add table ip strata; "
            "add chain ip strata post { type nat hook postrouting priority 100; }; "
            "add chain ip strata pre { type nat hook prerouting priority -100; }; "
            "add rule ip strata post oifname \"veth0\" ip saddr 10.0.0.0/24 masquerade; "
            "add rule ip strata pre iifname \"veth0\" ip daddr " + m_guest_address + " dnat to " + inside }));
        m_nat = true;
    } else {
        std::fprintf(stderr, "strata: --net netns=auto: neither iptables nor nft is installed, so there is no NAT: the guest "
                             "is reachable only from inside namespace %s (ip netns exec %s ...)\n", ns.c_str(), ns.c_str());
    }
    return ok();
}

NetNamespace::~NetNamespace()
{
    if (m_name.empty() || !m_owned)
        return;
    // Deleting the namespace deletes its veth end, so the pair, its tap and its
    // rules. Done as `ip netns del` does it (detach the bind mount that keeps the
    // namespace, remove its file) rather than by running ip: two system calls, so
    // a VMM that filters its own system calls at the end of its life can still.
    std::string const path = "/run/netns/" + m_name;
    if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
        std::fprintf(stderr, "strata: deleting namespace %s: umount: %s\n", m_name.c_str(), std::strerror(errno));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        std::fprintf(stderr, "strata: deleting namespace %s: %s\n", m_name.c_str(), std::strerror(errno));
}

Result<std::unique_ptr<virtio::net::Tap>> NetNamespace::open_tap() const
{
    return in_namespace(m_name, [] { return virtio::net::Tap::open("tap0"); });
}

} // namespace strata
