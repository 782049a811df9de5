// libFuzzer target: virtio-console chain parsing (devices/virtio/console/chain.h)
// over arbitrary guest memory. The input's first bytes pick the queue size, the
// head, indirect support and the direction; the rest fills guest RAM holding the
// descriptor table and indirect tables. Whatever it holds, parsing must end,
// never touch memory outside guest RAM (ASan), and either refuse the chain or
// return buffers that all lie inside guest RAM and total at most MaxChainBytes.
#include "devices/guest_memory.h"
#include "devices/virtio/console/chain.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

using namespace strata;
using namespace strata::virtio;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    if (size < 8)
        return 0;
    constexpr std::size_t RamSize = 64 * 1024;
    static std::byte* ram = static_cast<std::byte*>(std::aligned_alloc(4096, RamSize));
    std::memset(ram, 0, RamSize);
    std::memcpy(ram, data + 8, std::min(size - 8, RamSize));
    GuestMemory mem({ GuestMemory::Region { 0x1000, RamSize, ram } });

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
    std::uint64_t total = 0;
    for (auto const& b : parsed.buffers) {
        if (b.data() < ram || b.data() + b.size() > ram + RamSize)
            std::abort();
        total += b.size();
        // Touch every byte, as the device will.
        volatile std::byte sink {};
        for (auto x : b)
            sink = x;
        (void)sink;
    }
    if (total != parsed.bytes || total > console::MaxChainBytes)
        std::abort();
    return 0;
}
