#include "devices/virtio/console/chain.h"

namespace strata::virtio::console {

namespace {

ConsoleChain parse(DescriptorChain& chain, GuestMemory const& mem, bool device_writes)
{
    ConsoleChain out;
    auto refuse = [&out](std::string why) {
        out.buffers.clear();
        out.bytes = 0;
        out.error = std::move(why);
        return out;
    };
    for (;;) {
        auto next = chain.next();
        if (!next)
            return refuse(next.error().message);
        if (!next.value())
            break;
        Descriptor const& d = *next.value();
        if (d.writable != device_writes)
            return refuse(device_writes ? "a receive buffer is not device-writable"
                                        : "a transmit buffer is device-writable");
        if (d.len == 0)
            continue;
        if (out.bytes + d.len > MaxChainBytes)
            return refuse("the chain carries more than " + std::to_string(MaxChainBytes) + " bytes");
        auto slice = mem.slice(d.addr, d.len);
        if (!slice)
            return refuse("a buffer lies outside guest memory: " + slice.error().message);
        out.buffers.push_back(slice.value());
        out.bytes += d.len;
    }
    return out;
}

} // namespace

ConsoleChain parse_receive_chain(DescriptorChain& chain, GuestMemory const& mem)
{
    return parse(chain, mem, true);
}

ConsoleChain parse_transmit_chain(DescriptorChain& chain, GuestMemory const& mem)
{
    return parse(chain, mem, false);
}

} // namespace strata::virtio::console
