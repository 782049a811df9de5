// NetBackend: where a virtio-net device sends the guest's packets and takes the
// packets for the guest. Each packet crosses the interface as the 12-byte
// virtio_net_hdr (config.h NetHeader) followed by the Ethernet frame, which is
// exactly what a tap with IFF_VNET_HDR reads and writes, so the device never
// rewrites a packet. The VMM's implementation is Tap (tap.h); tests use a
// socket pair.
//
// The backend is non-blocking: the device's I/O thread waits on fd() with epoll
// (readable: a packet is waiting; writable: send() may succeed again) and never
// sleeps inside receive() or send(), so neither a slow peer nor a full queue in
// the host kernel stalls the device, let alone a vCPU.
// Threading: one device I/O thread uses a backend at a time; set_offloads may
// also be called while that thread is stopped (activation, reset).
#pragma once

#include "base/result.h"

#include <cstddef>
#include <span>
#include <sys/uio.h>

namespace strata::virtio::net {

// The segmentation and checksum work the guest agreed to take on received
// packets (GUEST_CSUM, GUEST_TSO4, GUEST_TSO6); the backend must not hand the
// device a packet that needs more (a tap: TUNSETOFFLOAD).
struct Offloads {
    bool csum { false };
    bool tso4 { false };
    bool tso6 { false };
    bool operator==(Offloads const&) const = default;
};

class NetBackend {
public:
    virtual ~NetBackend() = default;
    // Pollable: readable when receive() has a packet, writable when send() can go on.
    virtual int fd() const = 0;
    // One packet (header and frame) into buf; 0 when none is waiting. A packet
    // longer than buf is cut to buf's size (the device's buffer takes the largest
    // packet the offloads allow).
    [[nodiscard]] virtual Result<std::size_t> receive(std::span<std::byte> buf) = 0;
    // The same, scattered over pieces (the guest's own receive buffers, so the
    // packet is copied once, not twice). A packet longer than the pieces is cut
    // (a tap then reports either the cut or the whole length: the device gives
    // pieces that hold the largest packet, and drops one reported longer).
    [[nodiscard]] virtual Result<std::size_t> receive_into(std::span<iovec const> pieces) = 0;
    // One packet given as pieces, header first. false: the backend cannot take it
    // now; the caller keeps it and retries once fd() is writable. An error means
    // this packet was refused (the device drops it and counts it).
    [[nodiscard]] virtual Result<bool> send(std::span<iovec const> packet) = 0;
    [[nodiscard]] virtual Status set_offloads(Offloads offloads) = 0;
};

} // namespace strata::virtio::net
