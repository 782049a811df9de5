// What the agent needs from the system it runs on, behind an interface so that
// the protocol, provisioning and generalize logic run unchanged on the host in
// tests (a fake root directory, a recording freezer, a clock the test moves).
// The real implementation (system_environment.cpp) issues FIFREEZE/FITHAW, reads
// /proc/self/mounts, powers the VM off through reboot(2), sets IPv4 addresses
// and routes and MACs with the SIOC* ioctls and speaks HTTP/1.1 over TCP (the metadata
// service client, mmds_client.h).
// Threading: used from the agent's single thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace strata::agent {

struct Mount {
    std::string device;
    std::string path;
    std::string fstype;
    bool read_only { false };
};

// What to set on one network interface. Addresses are host-order integers.
struct Ipv4Setting {
    std::string iface;
    std::uint32_t address { 0 };  // 0: remove the interface's IPv4 address (the link stays up)
    unsigned prefix { 0 };         // 1..32 with an address
    std::uint32_t gateway { 0 };   // a default route via it; 0: none
    std::vector<std::uint32_t> host_routes; // /32 routes on the link (the metadata service's address)
    bool keep_address { false };   // leave the address as it is (address, prefix unused)
};

// A network interface and its hardware address, "xx:xx:xx:xx:xx:xx" lower case.
struct LinkAddress {
    std::string iface;
    std::string mac;
};

struct HttpRequest {
    std::uint32_t address { 0 }; // port 80
    std::string method;
    std::string path;
    std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpReply {
    unsigned status { 0 };  // 0: no reply (error says why)
    std::string body;
    std::string error;
};

class Environment {
public:
    virtual ~Environment() = default;
    // The directory the guest's root file system is seen at ("/" in the guest).
    virtual std::filesystem::path root() const = 0;
    virtual std::vector<Mount> mounts() = 0;
    // FIFREEZE / FITHAW on the file system mounted at path; "" on success, else why.
    virtual std::string freeze(std::string const& path) = 0;
    virtual std::string thaw(std::string const& path) = 0;
    // Flushes and ends the VM (with reboot=k the kernel resets through the i8042,
    // which strata treats as the end of the VM). Returns only in tests.
    virtual void power_off() = 0;
    virtual void set_hostname(std::string const& name) = 0;
    virtual std::chrono::steady_clock::time_point now() = 0;
    // Network interfaces other than the loopback, in the kernel's order.
    virtual std::vector<std::string> network_interfaces() { return {}; }
    // The interface's IPv4 address (host order); 0 when it has none.
    virtual std::uint32_t current_ipv4(std::string const& iface)
    {
        (void)iface;
        return 0;
    }
    // Brings the interface up and sets what `setting` says; "" on success, else why.
    virtual std::string configure_ipv4(Ipv4Setting const& setting) { return "no network in this environment (" + setting.iface + ")"; }
    // The Ethernet interfaces and their MACs (SIOCGIFHWADDR), in the kernel's order.
    virtual std::vector<LinkAddress> link_addresses() { return {}; }
    // Gives the interface the MAC (SIOCSIFHWADDR), up or not; "" on success, else why.
    virtual std::string set_link_address(LinkAddress const& link) { return "no network in this environment (" + link.iface + ")"; }
    // One HTTP/1.1 request (Connection: close) answered within `timeout`.
    virtual HttpReply http(HttpRequest const& request, std::chrono::milliseconds timeout)
    {
        (void)request;
        (void)timeout;
        return HttpReply { 0, {}, "no network in this environment" };
    }
    virtual void sleep(std::chrono::milliseconds d);
};

// The environment of a real guest; root is normally "/".
std::unique_ptr<Environment> make_system_environment(std::filesystem::path root = "/");

} // namespace strata::agent
