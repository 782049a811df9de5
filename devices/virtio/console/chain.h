// Parsing of one virtio-console buffer chain (virtio 1.2 §5.3.6), before anything
// is copied: a receiveq chain must consist of device-writable descriptors only,
// a transmitq chain of device-readable ones only (§5.3.6.1: the driver MUST NOT
// put a device-writable buffer on a transmitq). Every buffer is resolved to a host
// slice through GuestMemory, so a chain that points outside guest RAM, breaks the
// descriptor rules (descriptor_chain.h) or mixes directions is refused as a whole
// and nothing of it is delivered. Zero-length descriptors are allowed and skipped.
// Threading: pure functions.
#pragma once

#include "devices/guest_memory.h"
#include "devices/virtio/descriptor_chain.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strata::virtio::console {

struct ConsoleChain {
    std::vector<std::span<std::byte>> buffers; // host views of the guest buffers, in chain order
    std::uint64_t bytes { 0 };                 // their total length
    std::string error;                         // non-empty: refused, buffers is empty

    bool refused() const { return !error.empty(); }
};

// Total bytes one chain may carry; a longer chain is refused (the guest gains
// nothing from it, and the host would otherwise walk unbounded spans).
inline constexpr std::uint64_t MaxChainBytes = 1ULL << 20;

[[nodiscard]] ConsoleChain parse_receive_chain(DescriptorChain& chain, GuestMemory const& mem);
[[nodiscard]] ConsoleChain parse_transmit_chain(DescriptorChain& chain, GuestMemory const& mem);

} // namespace strata::virtio::console
