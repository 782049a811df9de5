// libFuzzer target: BlkRequest::parse over arbitrary chains and guest memory. The
// input is the guest; parse must never crash, never hand out an iovec outside guest
// RAM, and every accepted read/write must lie within the capacity.
#include "devices/guest_memory.h"
#include "tests/fuzz/fuzz_guest_ram.h"
#include "devices/virtio/blk/request.h"
#include "devices/virtio/descriptor_chain.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

using namespace strata;
using namespace strata::virtio;
using namespace strata::virtio::blk;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    if (size < fuzz::HeaderBytes)
        return 0;
    auto const guest = fuzz::guest_ram(data, size, 0);
    GuestMemory const& mem = guest.mem;

    BlkLimits limits;
    limits.capacity = 1u << (data[0] % 24);
    limits.read_only = data[1] & 1;
    limits.seg_max = 1u + data[2];
    limits.size_max = 512u << (data[3] % 12);
    limits.max_discard_seg = 1u + (data[4] % 8);
    limits.max_write_zeroes_seg = limits.max_discard_seg;
    std::uint16_t const queue_size = static_cast<std::uint16_t>(1u << (data[5] % 9));
    std::uint16_t head = static_cast<std::uint16_t>(data[6] % (queue_size + 1));

    DescriptorChain chain(mem, 0, queue_size, head, data[7] & 1);
    BlkRequest r = BlkRequest::parse(chain, mem, limits);
    if (r.rejected())
        return 0;
    std::uint64_t total = 0;
    for (auto const& v : r.data) {
        auto* p = static_cast<std::byte*>(v.iov_base);
        if (!guest.holds(p, v.iov_len))
            std::abort();
        total += v.iov_len;
    }
    if (total != r.data_len)
        std::abort();
    if ((r.type == request_type::In || r.type == request_type::Out)
        && (r.data_len % 512 != 0 || r.sector + r.data_len / 512 > limits.capacity))
        std::abort();
    for (auto const& z : r.ranges) {
        if (z.offset + z.length > limits.capacity * 512)
            std::abort();
    }
    return 0;
}
