// libFuzzer target: virtio-net chain parsing and transmit-header checks
// (devices/virtio/net/chain.h) over arbitrary guest memory. The input's first
// bytes pick the queue size, the head, indirect support, the direction and the
// negotiated features; the rest fills guest RAM holding the descriptor table and
// indirect tables. Whatever it holds, parsing must end, never touch memory
// outside guest RAM (ASan), and either refuse the chain or return buffers inside
// guest RAM within the direction's size limits.
#include "devices/guest_memory.h"
#include "tests/fuzz/fuzz_guest_ram.h"
#include "devices/virtio/net/chain.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

using namespace strata;
using namespace strata::virtio;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    if (size < fuzz::HeaderBytes)
        return 0;
    auto const guest = fuzz::guest_ram(data, size, 0x1000);
    GuestMemory const& mem = guest.mem;

    std::uint16_t const queue_size = static_cast<std::uint16_t>(1u << (data[0] % 9));
    std::uint16_t head = 0;
    std::memcpy(&head, data + 1, 2);
    bool const indirect = data[3] & 1;
    bool const receive = data[3] & 2;
    std::uint64_t const desc = 0x1000 + (static_cast<std::uint64_t>(data[4]) << 4);
    std::uint64_t const features = static_cast<std::uint64_t>(data[5]) | static_cast<std::uint64_t>(data[6]) << 8;

    DescriptorChain walk(mem, desc, queue_size, head, indirect);
    auto parsed = receive ? net::parse_receive_chain(walk, mem) : net::parse_transmit_chain(walk, mem);
    if (parsed.refused())
        return parsed.buffers.empty() && parsed.bytes == 0 ? 0 : (std::abort(), 0);
    std::uint64_t const total = fuzz::check_buffers(guest, parsed.buffers);
    if (total != parsed.bytes || total < net::HeaderSize)
        std::abort();
    if (receive ? total > net::MaxReceiveChainBytes : total > net::HeaderSize + net::MaxFrameBytes)
        std::abort();
    if (!receive) {
        auto const header = net::read_header(parsed);
        auto const why = net::check_transmit_header(header, features);
        // An accepted header asks for nothing the features do not allow.
        if (why.empty() && (header.flags & net::hdr::NeedsCsum) && !(features & net::feature::Csum))
            std::abort();
    }
    return 0;
}
