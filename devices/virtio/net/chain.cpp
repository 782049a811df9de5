#include "devices/virtio/net/chain.h"

#include <algorithm>
#include <cstring>

namespace strata::virtio::net {

namespace {

NetChain parse(DescriptorChain& chain, GuestMemory const& mem, bool device_writes)
{
    NetChain out;
    out.head = chain.head();
    auto refuse = [&out](std::string why) {
        out.buffers.clear();
        out.bytes = 0;
        out.error = std::move(why);
        return out;
    };
    std::uint64_t const limit = device_writes ? MaxReceiveChainBytes : HeaderSize + MaxFrameBytes;
    for (;;) {
        auto next = chain.next();
        if (!next)
            return refuse(next.error().message);
        if (!next.value())
            break;
        Descriptor const& d = *next.value();
        if (d.writable != device_writes)
            return refuse(device_writes ? "a receive buffer is not device-writable" : "a transmit buffer is device-writable");
        if (d.len == 0)
            continue;
        if (device_writes && out.bytes >= limit)
            continue; // walked (every descriptor is still checked) but never written
        if (!device_writes && out.bytes + d.len > limit)
            return refuse("the packet is longer than " + std::to_string(limit) + " bytes");
        if (!device_writes && out.buffers.size() >= MaxTransmitSegments)
            return refuse("the packet has more than " + std::to_string(MaxTransmitSegments) + " pieces");
        auto slice = mem.slice(d.addr, d.len);
        if (!slice)
            return refuse("a buffer lies outside guest memory: " + slice.error().message);
        auto span = slice.value();
        if (device_writes && out.bytes + span.size() > limit)
            span = span.first(static_cast<std::size_t>(limit - out.bytes));
        out.buffers.push_back(span);
        out.bytes += span.size();
    }
    if (out.bytes < HeaderSize)
        return refuse(std::string(device_writes ? "a receive" : "a transmit") + " chain of " + std::to_string(out.bytes)
            + " bytes has no room for the " + std::to_string(HeaderSize) + "-byte virtio-net header");
    if (!device_writes && out.bytes < HeaderSize + MinFrameBytes)
        return refuse("a transmit chain of " + std::to_string(out.bytes) + " bytes holds no Ethernet header");
    return out;
}

} // namespace

NetChain parse_receive_chain(DescriptorChain& chain, GuestMemory const& mem) { return parse(chain, mem, true); }

NetChain parse_transmit_chain(DescriptorChain& chain, GuestMemory const& mem) { return parse(chain, mem, false); }

NetHeader read_header(NetChain const& chain)
{
    NetHeader header {};
    // SAFETY: NetHeader is trivially copyable; the loop copies at most its size.
    auto* out = reinterpret_cast<std::byte*>(&header);
    std::size_t done = 0;
    for (auto const& b : chain.buffers) {
        std::size_t const n = std::min(b.size(), HeaderSize - done);
        std::memcpy(out + done, b.data(), n);
        done += n;
        if (done == HeaderSize)
            break;
    }
    return header;
}

std::string check_transmit_header(NetHeader const& header, std::uint64_t features)
{
    if ((header.flags & hdr::NeedsCsum) && !(features & feature::Csum))
        return "NEEDS_CSUM without VIRTIO_NET_F_CSUM";
    if (header.flags & ~(hdr::NeedsCsum | hdr::DataValid))
        return "unknown header flags " + std::to_string(header.flags);
    std::uint8_t const gso = header.gso_type & static_cast<std::uint8_t>(~hdr::GsoEcn);
    if (header.gso_type & hdr::GsoEcn)
        return "GSO with ECN, which is not offered";
    switch (gso) {
    case hdr::GsoNone:
        return {};
    case hdr::GsoTcpv4:
        if (!(features & feature::HostTso4))
            return "TCPv4 segmentation without VIRTIO_NET_F_HOST_TSO4";
        break;
    case hdr::GsoTcpv6:
        if (!(features & feature::HostTso6))
            return "TCPv6 segmentation without VIRTIO_NET_F_HOST_TSO6";
        break;
    default:
        return "segmentation type " + std::to_string(header.gso_type) + " is not offered";
    }
    if (!(header.flags & hdr::NeedsCsum))
        return "segmentation without NEEDS_CSUM";
    if (header.gso_size == 0)
        return "segmentation with gso_size 0";
    return {};
}

} // namespace strata::virtio::net
