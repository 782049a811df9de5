// The agent's Environment on a real Linux guest: /proc/self/mounts, FIFREEZE and
// FITHAW, sethostname(2), reboot(2) to end the VM, the SIOC* ioctls for IPv4
// addresses and routes, and HTTP over a TCP socket with deadlines.
#include "environment.h"
#include "mmds_client.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <fcntl.h>
#include <fstream>
#include <linux/fs.h>
#include <net/if_arp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace strata::agent {

namespace {

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string const& s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            int v = 0;
            bool ok = true;
            for (int k = 1; k <= 3; ++k) {
                char c = s[i + static_cast<std::size_t>(k)];
                ok = ok && c >= '0' && c <= '7';
                v = v * 8 + (c - '0');
            }
            if (ok) {
                out += static_cast<char>(v);
                i += 3;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

sockaddr_in inet(std::uint32_t address)
{
    sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(address);
    return a;
}

template<typename T>
void put_sockaddr(sockaddr& target, T const& value)
{
    static_assert(sizeof(T) <= sizeof(sockaddr));
    std::memcpy(&target, &value, sizeof(T));
}

// A socket closed however the function returns.
struct Socket {
    int fd;
    explicit Socket(int f)
        : fd(f)
    {
    }
    ~Socket()
    {
        if (fd >= 0)
            ::close(fd);
    }
    Socket(Socket const&) = delete;
    Socket& operator=(Socket const&) = delete;
};

class SystemEnvironment final : public Environment {
public:
    explicit SystemEnvironment(std::filesystem::path root)
        : m_root(std::move(root))
    {
    }
    std::filesystem::path root() const override { return m_root; }

    std::vector<Mount> mounts() override
    {
        std::vector<Mount> out;
        std::ifstream in("/proc/self/mounts");
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string dev, path, type, opts;
            if (!(ls >> dev >> path >> type >> opts))
                continue;
            bool ro = ("," + opts + ",").find(",ro,") != std::string::npos;
            out.push_back(Mount { unescape(dev), unescape(path), type, ro });
        }
        return out;
    }

    std::string freeze(std::string const& path) override { return fs_ioctl(path, FIFREEZE); }
    std::string thaw(std::string const& path) override { return fs_ioctl(path, FITHAW); }

    void power_off() override
    {
        ::sync();
        // With reboot=k on the command line the kernel resets through the i8042,
        // which strata takes as the end of the VM.
        ::reboot(RB_AUTOBOOT);
    }

    void set_hostname(std::string const& name) override { (void)!::sethostname(name.data(), name.size()); }
    std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now(); }

    std::vector<std::string> network_interfaces() override
    {
        std::vector<std::pair<int, std::string>> found;
        std::error_code ec;
        for (auto const& entry : std::filesystem::directory_iterator("/sys/class/net", ec)) {
            std::string name = entry.path().filename().string();
            if (name == "lo")
                continue;
            std::ifstream index(entry.path() / "ifindex");
            int i = 0;
            if (index >> i)
                found.emplace_back(i, name);
        }
        std::sort(found.begin(), found.end());
        std::vector<std::string> out;
        for (auto const& f : found)
            out.push_back(f.second);
        return out;
    }

    std::vector<LinkAddress> link_addresses() override
    {
        std::vector<LinkAddress> out;
        std::unique_ptr<struct if_nameindex, void (*)(struct if_nameindex*)> names(::if_nameindex(), ::if_freenameindex);
        Socket sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!names || sock.fd < 0)
            return out;
        for (auto* n = names.get(); n->if_index != 0 && n->if_name; ++n) {
            std::string const name = n->if_name;
            if (name.size() >= IFNAMSIZ)
                continue;
            ifreq req {};
            std::memcpy(req.ifr_name, name.data(), name.size());
            if (::ioctl(sock.fd, SIOCGIFHWADDR, &req) != 0 || req.ifr_hwaddr.sa_family != ARPHRD_ETHER)
                continue;
            char text[18];
            auto const* b = reinterpret_cast<unsigned char const*>(req.ifr_hwaddr.sa_data); // SAFETY: the address's bytes
            std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
            out.push_back(LinkAddress { name, text });
        }
        return out;
    }

    std::string set_link_address(LinkAddress const& link) override
    {
        if (link.iface.empty() || link.iface.size() >= IFNAMSIZ)
            return "bad interface name";
        unsigned bytes[6];
        char tail = 0;
        if (link.mac.size() != 17
            || std::sscanf(link.mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &bytes[0], &bytes[1], &bytes[2], &bytes[3], &bytes[4], &bytes[5], &tail) != 6)
            return "'" + link.mac + "' is not a MAC address";
        Socket sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (sock.fd < 0)
            return std::string("socket: ") + std::strerror(errno);
        ifreq req {};
        std::memcpy(req.ifr_name, link.iface.data(), link.iface.size());
        req.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        for (int i = 0; i < 6; ++i)
            req.ifr_hwaddr.sa_data[i] = static_cast<char>(bytes[i]);
        // virtio-net (like most NICs) takes a new address while up
        // (IFF_LIVE_ADDR_CHANGE), so addresses and routes stay as they are.
        if (::ioctl(sock.fd, SIOCSIFHWADDR, &req) != 0)
            return "SIOCSIFHWADDR " + link.iface + ": " + std::strerror(errno);
        return "";
    }

    std::uint32_t current_ipv4(std::string const& iface) override
    {
        if (iface.empty() || iface.size() >= IFNAMSIZ)
            return 0;
        Socket sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ifreq req {};
        std::memcpy(req.ifr_name, iface.data(), iface.size());
        if (sock.fd < 0 || ::ioctl(sock.fd, SIOCGIFADDR, &req) != 0)
            return 0;
        sockaddr_in a {};
        std::memcpy(&a, &req.ifr_addr, sizeof a);
        return ntohl(a.sin_addr.s_addr);
    }

    std::string configure_ipv4(Ipv4Setting const& setting) override
    {
        if (setting.iface.empty() || setting.iface.size() >= IFNAMSIZ)
            return "bad interface name";
        Socket sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (sock.fd < 0)
            return std::string("socket: ") + std::strerror(errno);
        ifreq req {};
        std::memcpy(req.ifr_name, setting.iface.data(), setting.iface.size());
        auto fail = [](char const* what) { return std::string(what) + ": " + std::strerror(errno); };
        if (::ioctl(sock.fd, SIOCGIFFLAGS, &req) != 0)
            return fail("SIOCGIFFLAGS");
        req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP);
        if (::ioctl(sock.fd, SIOCSIFFLAGS, &req) != 0)
            return fail("SIOCSIFFLAGS");
        if (!setting.keep_address) {
            // Setting 0.0.0.0 removes the interface's address (and its routes).
            put_sockaddr(req.ifr_addr, inet(setting.address));
            if (::ioctl(sock.fd, SIOCSIFADDR, &req) != 0 && !(setting.address == 0 && errno == EADDRNOTAVAIL))
                return fail("SIOCSIFADDR");
            if (setting.address == 0)
                return {};
            std::uint32_t const mask = setting.prefix >= 32 ? 0xffffffffu : ~(0xffffffffu >> setting.prefix);
            put_sockaddr(req.ifr_netmask, inet(mask));
            if (::ioctl(sock.fd, SIOCSIFNETMASK, &req) != 0)
                return fail("SIOCSIFNETMASK");
        }
        char dev[IFNAMSIZ] {};
        std::memcpy(dev, setting.iface.data(), setting.iface.size());
        for (auto host : setting.host_routes) {
            rtentry route {};
            put_sockaddr(route.rt_dst, inet(host));
            put_sockaddr(route.rt_genmask, inet(0xffffffffu));
            route.rt_flags = static_cast<unsigned short>(RTF_UP | RTF_HOST);
            route.rt_dev = dev;
            if (::ioctl(sock.fd, SIOCADDRT, &route) != 0 && errno != EEXIST)
                return fail("SIOCADDRT (host route)");
        }
        if (setting.gateway != 0) {
            rtentry route {};
            put_sockaddr(route.rt_dst, inet(0));
            put_sockaddr(route.rt_genmask, inet(0));
            put_sockaddr(route.rt_gateway, inet(setting.gateway));
            route.rt_flags = static_cast<unsigned short>(RTF_UP | RTF_GATEWAY);
            route.rt_dev = dev;
            if (::ioctl(sock.fd, SIOCADDRT, &route) != 0 && errno != EEXIST)
                return fail("SIOCADDRT (default route)");
        }
        return {};
    }

    HttpReply http(HttpRequest const& request, std::chrono::milliseconds timeout) override
    {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        auto left_ms = [&] {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
            return static_cast<int>(std::max<long long>(0, left));
        };
        Socket sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (sock.fd < 0)
            return HttpReply { 0, {}, std::string("socket: ") + std::strerror(errno) };
        sockaddr_in to = inet(request.address);
        to.sin_port = htons(80);
        sockaddr target {};
        put_sockaddr(target, to);
        if (::connect(sock.fd, &target, sizeof to) != 0 && errno != EINPROGRESS)
            return HttpReply { 0, {}, std::string("connect: ") + std::strerror(errno) };
        pollfd p { sock.fd, POLLOUT, 0 };
        if (::poll(&p, 1, left_ms()) != 1)
            return HttpReply { 0, {}, "connect: no answer within " + std::to_string(timeout.count()) + " ms" };
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0)
            return HttpReply { 0, {}, std::string("connect: ") + std::strerror(err) };
        std::string const bytes = format_http_request(request);
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            ssize_t n = ::send(sock.fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return HttpReply { 0, {}, std::string("send: ") + std::strerror(errno) };
            pollfd w { sock.fd, POLLOUT, 0 };
            if (::poll(&w, 1, left_ms()) != 1)
                return HttpReply { 0, {}, "send: timed out" };
        }
        // Connection: close, so the reply ends where the server closes.
        std::string text;
        char buffer[4096];
        for (;;) {
            ssize_t n = ::recv(sock.fd, buffer, sizeof buffer, 0);
            if (n > 0) {
                text.append(buffer, static_cast<std::size_t>(n));
                if (text.size() > kMaxMmdsReplyBytes + 4096)
                    return HttpReply { 0, {}, "the reply is too large" };
                continue;
            }
            if (n == 0)
                break;
            if (errno != EAGAIN && errno != EINTR)
                return HttpReply { 0, {}, std::string("recv: ") + std::strerror(errno) };
            pollfd r { sock.fd, POLLIN, 0 };
            if (::poll(&r, 1, left_ms()) != 1)
                return HttpReply { 0, {}, "no reply within " + std::to_string(timeout.count()) + " ms" };
        }
        return parse_http_reply(text);
    }

private:
    static std::string fs_ioctl(std::string const& path, unsigned long request)
    {
        int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return std::strerror(errno);
        int rc = ::ioctl(fd, request, 0);
        int err = errno;
        ::close(fd);
        return rc == 0 ? std::string() : std::string(std::strerror(err));
    }

    std::filesystem::path m_root;
};

} // namespace

void Environment::sleep(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

std::unique_ptr<Environment> make_system_environment(std::filesystem::path root)
{
    return std::make_unique<SystemEnvironment>(std::move(root));
}

} // namespace strata::agent
