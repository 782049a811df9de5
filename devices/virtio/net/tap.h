// Tap: a NetBackend over an existing Linux tap interface, opened through
// /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, a 12-byte virtio header
// (TUNSETVNETHDRSZ) and O_NONBLOCK. The interface must exist beforehand (`ip
// tuntap add NAME mode tap`): strata attaches to a tap, it never creates one
// (TUNSETIFF would create a missing one for a privileged caller, so existence is
// checked first), so its address, namespace and owner stay the user's.
//
// Errors from open(): a bad name (Usage), no such interface (NotFound), an
// interface that is not a tap (BadInput), a tap another process holds (Busy), a
// tap owned by another user or no /dev/net/tun access (Permission).
// Threading: see NetBackend.
#pragma once

#include "base/fd.h"
#include "devices/virtio/net/backend.h"

#include <memory>
#include <string>

namespace strata::virtio::net {

class Tap final : public NetBackend {
public:
    [[nodiscard]] static Result<std::unique_ptr<Tap>> open(std::string const& name);

    int fd() const override { return m_fd.get(); }
    [[nodiscard]] Result<std::size_t> receive(std::span<std::byte> buf) override;
    [[nodiscard]] Result<std::size_t> receive_into(std::span<iovec const> pieces) override;
    [[nodiscard]] Result<bool> send(std::span<iovec const> packet) override;
    [[nodiscard]] Status set_offloads(Offloads offloads) override;
    std::string const& name() const { return m_name; }

private:
    Tap(Fd fd, std::string name);
    Fd m_fd;
    std::string m_name;
};

// Whether name is an interface name Linux accepts (1-15 bytes, no '/', ':' or
// white space, not "." or "..").
bool valid_interface_name(std::string const& name);

} // namespace strata::virtio::net
