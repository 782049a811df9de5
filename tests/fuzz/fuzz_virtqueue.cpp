// libFuzzer target: split-virtqueue chain walking over arbitrary guest memory.
// The input is the guest: its first bytes pick the queue size, head and features,
// the rest fills guest RAM that holds the descriptor table, rings and indirect
// tables. Whatever it contains, walking must end (TTL), never read outside guest
// memory (ASan), and never yield more descriptors than the TTL allows.
#include "devices/guest_memory.h"
#include "tests/fuzz/fuzz_guest_ram.h"
#include "devices/virtio/descriptor_chain.h"
#include "devices/virtio/queue.h"
#include "devices/virtio/spec.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace strata;
using namespace strata::virtio;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    if (size < fuzz::HeaderBytes)
        return 0;
    auto const guest = fuzz::guest_ram(data, size, 0x1000);
    GuestMemory const& mem = guest.mem;

    std::uint16_t const queue_size = static_cast<std::uint16_t>(1u << (data[0] % 9)); // 1..256
    std::uint16_t head = 0;
    std::memcpy(&head, data + 1, 2);
    bool const indirect = data[3] & 1;
    std::uint64_t const features = feature::Version1 | (indirect ? feature::RingIndirectDesc : 0)
        | ((data[3] & 2) ? feature::RingEventIdx : 0);
    std::uint64_t const desc = 0x1000 + (static_cast<std::uint64_t>(data[4]) << 4);

    // 1. The chain at an arbitrary head.
    DescriptorChain chain(mem, desc, queue_size, head, indirect);
    std::size_t count = 0;
    while (true) {
        auto d = chain.next();
        if (!d || !d.value())
            break;
        ++count;
        if (count > 2u * queue_size)
            std::abort(); // TTL broken
    }

    // 2. A whole queue: take every available chain, publish it used.
    QueueConfig cfg { queue_size, true, desc, 0x1000 + (std::uint64_t(data[5]) << 6), 0x1000 + (std::uint64_t(data[6]) << 8) };
    auto q = Virtqueue::create(mem, cfg, 256, features);
    if (!q)
        return 0;
    for (unsigned taken = 0; taken < 2u * queue_size; ++taken) {
        auto h = q.value().peek();
        if (!h || !h.value())
            break;
        auto c = q.value().chain(*h.value());
        std::uint32_t bytes = 0;
        while (true) {
            auto d = c.next();
            if (!d || !d.value())
                break;
            bytes += d.value()->len;
        }
        q.value().pop();
        q.value().add_used(*h.value(), bytes);
        (void)q.value().needs_interrupt();
    }
    (void)q.value().enable_notification();
    return 0;
}
