// virtio-net constants (virtio 1.2 §5.1): device id, the feature bits strata
// offers or names, the queue numbers of one queue pair, the configuration space,
// the per-packet header, and NetOptions, the knobs the VMM sets.
//
// Offered: MAC (config space), STATUS (link always up), MRG_RXBUF, CSUM and
// GUEST_CSUM, HOST_TSO4/6 and GUEST_TSO4/6 (with the header passed to the tap
// unchanged: the tap speaks the same virtio_net_hdr).
// Not implemented: CTRL_VQ and everything that needs it (rx mode, VLAN filter,
// MAC table, announce), MQ (one queue pair only), MTU, UFO/USO, ECN, RSS, hash
// reports, SPEED_DUPLEX, STANDBY.
// Threading: plain values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace strata {
class RateLimiter;
}
namespace strata::virtio::net {
class MmdsStore;
}

namespace strata::virtio::net {

inline constexpr std::uint32_t DeviceId = 1;

// Device-specific feature bits (§5.1.3).
namespace feature {
inline constexpr std::uint64_t Csum = 1ULL << 0;       // the guest may send partially checksummed packets
inline constexpr std::uint64_t GuestCsum = 1ULL << 1;  // the guest takes partially checksummed packets
inline constexpr std::uint64_t Mtu = 1ULL << 3;
inline constexpr std::uint64_t Mac = 1ULL << 5;
inline constexpr std::uint64_t GuestTso4 = 1ULL << 7;
inline constexpr std::uint64_t GuestTso6 = 1ULL << 8;
inline constexpr std::uint64_t GuestEcn = 1ULL << 9;
inline constexpr std::uint64_t GuestUfo = 1ULL << 10;
inline constexpr std::uint64_t HostTso4 = 1ULL << 11;
inline constexpr std::uint64_t HostTso6 = 1ULL << 12;
inline constexpr std::uint64_t HostEcn = 1ULL << 13;
inline constexpr std::uint64_t HostUfo = 1ULL << 14;
inline constexpr std::uint64_t MrgRxbuf = 1ULL << 15;
inline constexpr std::uint64_t Status = 1ULL << 16;
inline constexpr std::uint64_t CtrlVq = 1ULL << 17;
inline constexpr std::uint64_t Mq = 1ULL << 22;
} // namespace feature

// One queue pair, no control queue (§5.1.2).
inline constexpr std::uint16_t ReceiveQueue = 0;  // receiveq1: host -> guest (device-writable buffers)
inline constexpr std::uint16_t TransmitQueue = 1; // transmitq1: guest -> host (device-readable buffers)
inline constexpr std::uint16_t QueueCount = 2;

inline constexpr std::uint16_t StatusLinkUp = 1;

// struct virtio_net_config (§5.1.4) up to mtu.
struct ConfigSpace {
    std::uint8_t mac[6];                  // 0x00 with F_MAC
    std::uint16_t status;                 // 0x06 with F_STATUS
    std::uint16_t max_virtqueue_pairs;    // 0x08 with F_MQ (not offered; reads 1)
    std::uint16_t mtu;                    // 0x0a with F_MTU (not offered; reads 0)
};
static_assert(sizeof(ConfigSpace) == 12);

// struct virtio_net_hdr (§5.1.6) as VERSION_1 lays it out: always 12 bytes, with
// num_buffers. The tap is told the same size (TUNSETVNETHDRSZ), so the header
// a guest writes is the header the tap reads and vice versa.
struct NetHeader {
    std::uint8_t flags;        // NEEDS_CSUM 1, DATA_VALID 2, RSC_INFO 4
    std::uint8_t gso_type;     // NONE 0, TCPV4 1, UDP 3, TCPV6 4, ECN 0x80
    std::uint16_t hdr_len;
    std::uint16_t gso_size;
    std::uint16_t csum_start;
    std::uint16_t csum_offset;
    std::uint16_t num_buffers; // with MRG_RXBUF: buffers this packet spans; else 1
};
static_assert(sizeof(NetHeader) == 12);
inline constexpr std::size_t HeaderSize = sizeof(NetHeader);

namespace hdr {
inline constexpr std::uint8_t NeedsCsum = 1;
inline constexpr std::uint8_t DataValid = 2;
inline constexpr std::uint8_t GsoNone = 0;
inline constexpr std::uint8_t GsoTcpv4 = 1;
inline constexpr std::uint8_t GsoUdp = 3;
inline constexpr std::uint8_t GsoTcpv6 = 4;
inline constexpr std::uint8_t GsoEcn = 0x80;
} // namespace hdr

// The largest packet either direction carries: a 64 KiB GSO frame with its
// Ethernet header and a VLAN tag, plus the virtio header (as Firecracker sizes it).
inline constexpr std::size_t MaxFrameBytes = 65562;
inline constexpr std::size_t MinFrameBytes = 14; // an Ethernet header

using MacAddress = std::array<std::uint8_t, 6>;

struct NetOptions {
    std::string id { "net0" }; // for log messages and metrics
    MacAddress mac {};
    std::uint16_t queue_size { 256 };
    // Frames the I/O thread moves in one direction before it looks at the other
    // and at its control events: a guest that floods transmitq cannot starve
    // receive, reset or the limiter.
    unsigned budget { 64 };
    // For this long after it last moved a packet, the I/O thread polls its
    // events instead of sleeping in epoll_wait (0: never), trading host CPU for
    // the wake-up latency of request/response traffic. Off by default: it
    // pays only where the host has a core to spare (the VMM sets it from
    // STRATA_NET_POLL_US).
    unsigned poll_us { 0 };
    // Token buckets for each direction (base/rate_limiter.h, the disk limiter's),
    // owned by the VMM and outliving the device; null: unlimited. Bytes are the
    // frame's (without the virtio header); every packet is one operation.
    RateLimiter* rx_limiter { nullptr };
    RateLimiter* tx_limiter { nullptr };
    // The VM's metadata service (mmds_store.h), served on this interface at
    // mmds_ipv4 (host order) by the device itself (mmds_stack.h); null: frames
    // for that address go to the backend like any other.
    std::shared_ptr<MmdsStore> mmds;
    std::uint32_t mmds_ipv4 { 0xa9fea9fe }; // 169.254.169.254
};

// "52:54:00:12:34:56" -> bytes; nullopt unless six two-digit hex groups
// separated by ':' (a multicast address, bit 0 of the first byte, is refused too).
std::optional<MacAddress> parse_mac(std::string const& text);
std::string format_mac(MacAddress const& mac);
// A random locally administered unicast address (02:xx:xx:xx:xx:xx family).
MacAddress random_mac();

} // namespace strata::virtio::net
