// Parsing of one virtio-net buffer chain (virtio 1.2 §5.1.6) before anything is
// copied or sent: a receiveq chain must hold device-writable descriptors only
// and room for at least the 12-byte header; a transmitq chain device-readable
// descriptors only, at least the header and at most a header and MaxFrameBytes.
// Every buffer is resolved to a host slice through GuestMemory, so a chain that
// points outside guest RAM, breaks the descriptor rules (descriptor_chain.h),
// mixes directions or is too small or too large is refused as a whole.
// Zero-length descriptors are allowed and skipped.
//
// check_transmit_header() then checks the header a transmit chain starts with
// against the negotiated features: a guest may ask for checksum or segmentation
// offload only if it negotiated CSUM / HOST_TSO4 / HOST_TSO6.
// Threading: pure functions.
#pragma once

#include "devices/guest_memory.h"
#include "devices/virtio/descriptor_chain.h"
#include "devices/virtio/net/config.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strata::virtio::net {

struct NetChain {
    std::uint16_t head { 0 };
    std::vector<std::span<std::byte>> buffers; // host views of the guest buffers, in chain order
    std::uint64_t bytes { 0 };                 // their total length
    std::string error;                         // non-empty: refused, buffers is empty

    bool refused() const { return !error.empty(); }
};

// A receive chain longer than this is used only up to it: no packet is larger.
inline constexpr std::uint64_t MaxReceiveChainBytes = 1ULL << 20;
// writev() takes at most 1024 pieces; the header copy is one of them.
inline constexpr std::size_t MaxTransmitSegments = 1023;

[[nodiscard]] NetChain parse_receive_chain(DescriptorChain& chain, GuestMemory const& mem);
[[nodiscard]] NetChain parse_transmit_chain(DescriptorChain& chain, GuestMemory const& mem);

// Copies the first HeaderSize bytes of a parsed transmit chain (which holds at
// least that many).
NetHeader read_header(NetChain const& chain);
// Empty when the header asks only for what `features` allow; else why not.
std::string check_transmit_header(NetHeader const& header, std::uint64_t features);

} // namespace strata::virtio::net
