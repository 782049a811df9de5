#include "devices/virtio/net/tap.h"

#include "devices/virtio/net/config.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace strata::virtio::net {

bool valid_interface_name(std::string const& name)
{
    if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..")
        return false;
    for (char c : name)
        if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
            return false;
    return true;
}

Tap::Tap(Fd fd, std::string name)
    : m_fd(std::move(fd))
    , m_name(std::move(name))
{
}

Result<std::unique_ptr<Tap>> Tap::open(std::string const& name)
{
    if (!valid_interface_name(name))
        return make_error(ErrorKind::Usage, "'" + name + "' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
    if (::if_nametoindex(name.c_str()) == 0)
        return make_error(ErrorKind::NotFound, "tap '" + name + "' does not exist (create it first: ip tuntap add " + name + " mode tap)");
    int raw = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (raw < 0) {
        int const err = errno;
        return make_error(err == EACCES || err == EPERM ? ErrorKind::Permission : ErrorKind::Unavailable,
            std::string("cannot open /dev/net/tun: ") + std::strerror(err));
    }
    Fd fd(raw);
    ifreq ifr {};
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
        int const err = errno;
        switch (err) {
        case EBUSY:
            return make_error(ErrorKind::Busy, "tap '" + name + "' is busy: another process has it open");
        case EINVAL:
            return make_error(ErrorKind::BadInput, "'" + name + "' is not a tap interface (a tun device or another kind of interface)");
        case EPERM:
        case EACCES:
            return make_error(ErrorKind::Permission, "tap '" + name + "' belongs to another user or group (ip tuntap add ... user U), or CAP_NET_ADMIN is missing");
        default:
            return errno_error("TUNSETIFF on tap '" + name + "'", err);
        }
    }
    int hdr = static_cast<int>(HeaderSize);
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) < 0)
        return errno_error("TUNSETVNETHDRSZ on tap '" + name + "'");
    auto tap = std::unique_ptr<Tap>(new Tap(std::move(fd), name));
    STRATA_TRY(tap->set_offloads(Offloads {}));
    return tap;
}

Result<std::size_t> Tap::receive(std::span<std::byte> buf)
{
    iovec const whole { buf.data(), buf.size() };
    return receive_into(std::span(&whole, 1));
}

Result<std::size_t> Tap::receive_into(std::span<iovec const> pieces)
{
    for (;;) {
        // A tap returns the packet's full length even when the pieces held less.
        ssize_t n = ::readv(m_fd.get(), pieces.data(), static_cast<int>(pieces.size()));
        if (n >= 0)
            return static_cast<std::size_t>(n);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return std::size_t { 0 };
        return errno_error("read from tap '" + m_name + "'");
    }
}

Result<bool> Tap::send(std::span<iovec const> packet)
{
    for (;;) {
        ssize_t n = ::writev(m_fd.get(), packet.data(), static_cast<int>(packet.size()));
        if (n >= 0)
            return true; // a tap takes a packet whole or not at all
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return false;
        return errno_error("write to tap '" + m_name + "'");
    }
}

Status Tap::set_offloads(Offloads offloads)
{
    unsigned flags = 0;
    if (offloads.csum) {
        flags |= TUN_F_CSUM;
        // The kernel takes TSO only together with checksum offload.
        if (offloads.tso4)
            flags |= TUN_F_TSO4;
        if (offloads.tso6)
            flags |= TUN_F_TSO6;
    }
    if (::ioctl(m_fd.get(), TUNSETOFFLOAD, static_cast<unsigned long>(flags)) < 0)
        return errno_error("TUNSETOFFLOAD on tap '" + m_name + "'");
    return ok();
}

} // namespace strata::virtio::net
