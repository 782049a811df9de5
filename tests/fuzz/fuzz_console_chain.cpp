// libFuzzer target: virtio-console chain parsing (devices/virtio/console/chain.h)
// over arbitrary guest memory. The input's first bytes pick the queue size, the
// head, indirect support and the direction; the rest fills guest RAM holding the
// descriptor table and indirect tables. Whatever it holds, parsing must end,
// never touch memory outside guest RAM (ASan), and either refuse the chain or
// return buffers that all lie inside guest RAM and total at most MaxChainBytes.
#include "devices/guest_memory.h"
#include "tests/fuzz/fuzz_guest_ram.h"
#include "devices/virtio/console/chain.h"

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

    DescriptorChain chain(mem, desc, queue_size, head, indirect);
    auto parsed = receive ? console::parse_receive_chain(chain, mem) : console::parse_transmit_chain(chain, mem);
    if (parsed.refused())
        return parsed.buffers.empty() && parsed.bytes == 0 ? 0 : (std::abort(), 0);
    std::uint64_t const total = fuzz::check_buffers(guest, parsed.buffers);
    if (total != parsed.bytes || total > console::MaxChainBytes)
        std::abort();
    return 0;
}
