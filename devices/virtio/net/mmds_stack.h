// MmdsStack: the network side of the metadata service (mmds_store.h), a small
// ARP/IPv4/TCP/HTTP server inside the virtio-net device. Frames the guest sends
// are offered to it before they reach the backend (the tap):
// - an ARP packet about the service's address (169.254.169.254 by default) is
//   taken; a request is answered with the service's own MAC;
// - an IPv4 packet to that address is taken: TCP to port 80 is served, anything
//   else (other ports, other protocols, fragments, GSO frames) is dropped and
//   counted;
// every other frame goes on to the backend untouched. So the guest reaches the
// service through its own interface only and nothing for it leaves the VM.
//
// TCP, server side only, without timers: SYN -> SYN-ACK (MSS option), in-order
// data is taken up to MaxRequestBytes per connection (more is a reset), each
// complete HTTP/1.x request is answered (keep-alive unless the request says
// close or is HTTP/1.0), responses go out in segments of the guest's MSS within
// its advertised window, and a FIN from the guest is answered with the rest of
// the response and a FIN. Out-of-order or repeated segments get an ACK and the
// unacknowledged data again (go-back-N); so do two duplicate ACKs in a row.
// Frames for the guest wait in a queue of at most MaxQueuedFrames (the device
// delivers them like received packets); beyond it they are dropped and counted.
// At most MaxConnections live at once; a new one closes the oldest. Checksums of
// incoming segments are not checked (the link is memory; a guest with checksum
// offload leaves them unfinished); outgoing ones are complete.
//
// Every frame is hostile input: every length is checked against the frame
// before it is read, and nothing the guest sends can make the stack read or
// write outside its buffers (fuzz_net_chain drives it with arbitrary frames).
// Threading: one device I/O thread; the store is shared (it locks).
#pragma once

#include "devices/virtio/net/config.h"
#include "devices/virtio/net/mmds_store.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::virtio::net {

inline constexpr std::uint32_t MmdsDefaultIpv4 = 0xa9fea9fe; // 169.254.169.254
// A locally administered unicast MAC for the service.
inline constexpr MacAddress MmdsMac { 0x06, 0x01, 0x23, 0x45, 0x67, 0x01 };

struct MmdsStackCounters {
    std::uint64_t frames_in { 0 };  // frames taken from the guest
    std::uint64_t frames_out { 0 }; // frames queued for the guest
    std::uint64_t dropped { 0 };    // taken but not served (malformed, other ports, ...) or queue full
    std::uint64_t resets { 0 };     // connections reset
};

class MmdsStack {
public:
    static constexpr std::size_t MaxConnections = 16;
    static constexpr std::size_t MaxRequestBytes = 4096;
    static constexpr std::size_t MaxQueuedFrames = 1024;
    // The largest frame the guest can send the service that is looked at: larger
    // ones (no request needs them) are dropped.
    static constexpr std::size_t MaxFrameBytes = 9216;
    // How many bytes of a frame classify() needs (Ethernet + ARP).
    static constexpr std::size_t ClassifyBytes = 42;

    MmdsStack(std::shared_ptr<MmdsStore> store, std::uint32_t ipv4 = MmdsDefaultIpv4);
    ~MmdsStack();

    // Whether a frame that starts with `prefix` (its first ClassifyBytes or all
    // of a shorter frame) is for the service.
    bool classify(std::span<std::byte const> prefix) const;
    // Takes a frame classify() claimed (the whole Ethernet frame, no virtio
    // header); `gso` says the virtio header asked for segmentation.
    void handle(std::span<std::byte const> frame, bool gso = false);

    bool pending() const { return !m_out.empty(); }
    // The next frame for the guest (Ethernet, checksums complete); empty when none.
    std::vector<std::byte> pop();
    MmdsStackCounters counters() const { return m_counters; }
    std::uint32_t ipv4() const { return m_ipv4; }

private:
    struct Conn;
    struct Segment;
    void handle_arp(std::span<std::byte const> frame);
    void handle_tcp(std::span<std::byte const> frame, std::size_t ip_offset, std::size_t ip_header, std::size_t ip_total);
    void on_segment(Segment const& seg);
    Conn* find(std::uint32_t ip, std::uint16_t port);
    void drop(Conn* conn);
    void rewind(Conn& conn);
    void serve_requests(Conn& conn);
    void send_data(Conn& conn);
    std::vector<std::byte> tcp_frame(MacAddress const& mac, std::uint32_t ip, std::uint16_t port, std::uint32_t seq,
        std::uint32_t ack, std::uint8_t flags, std::span<std::byte const> payload, bool mss_option);
    void send_tcp(Conn const& conn, std::uint32_t seq, std::uint8_t flags, std::span<std::byte const> payload, bool mss_option);
    void send_reset(MacAddress const& mac, std::uint32_t ip, std::uint16_t port, std::uint32_t seq, std::uint32_t ack, bool with_ack);
    void queue(std::vector<std::byte> frame);

    std::shared_ptr<MmdsStore> m_store;
    std::uint32_t m_ipv4;
    std::vector<std::unique_ptr<Conn>> m_conns;
    std::deque<std::vector<std::byte>> m_out;
    std::uint16_t m_ip_id { 0 };
    std::uint64_t m_clock { 0 }; // orders connections by last use
    std::mt19937 m_random; // initial sequence numbers, seeded by getrandom (allowed under every seccomp filter)
    MmdsStackCounters m_counters;
};

// Parses one HTTP/1.x request from the front of `data`: the number of bytes it
// used, 0 when it is not complete yet, or an error message when it never can be
// (the connection is then answered 400 and closed). In mmds_http.cpp; exposed
// for the tests.
struct HttpParse {
    std::size_t used { 0 };
    std::string error;
    MmdsRequest request;
    bool close { false }; // "Connection: close" or HTTP/1.0
};
HttpParse parse_http_request(std::string_view data);
std::string format_http_reply(MmdsReply const& reply, bool close);

} // namespace strata::virtio::net
