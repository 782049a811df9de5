// libFuzzer target: the metadata service's network stack (devices/virtio/net/
// mmds_stack.h) fed arbitrary frames from a guest. The input is a sequence of
// frames, each a 2-byte length and that many bytes; a flag byte before each picks
// whether the frame is offered through classify() (as the device does) or handed
// to handle() directly (so the deeper parsers see every shape), and whether the
// virtio header asked for GSO, whether the answers are taken at once (4) and
// whether the frame's ACK number follows the stack's (8). The data store holds a few values, so GETs find
// something. Whatever the frames hold, the stack must not crash or touch memory
// outside its buffers (ASan), must keep its queue within MaxQueuedFrames and
// must answer only with frames that are well formed Ethernet + ARP or IPv4.
#include "devices/virtio/net/mmds_stack.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace strata::virtio::net;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    static std::shared_ptr<MmdsStore> store = [] {
        auto s = MmdsStore::create(MmdsVersion::V1);
        if (!s->put(R"({"latest":{"meta-data":{"instance-id":"i-1","tags":["a","b"],"n":1}}})"))
            std::abort();
        return s;
    }();
    MmdsStack stack(store);
    std::uint32_t next_seq = 0; // the stack's sequence number after its last TCP frame
    auto track = [&next_seq](std::vector<std::byte> const& out) {
        if (out.size() < 54 || std::to_integer<std::uint8_t>(out[23]) != 6)
            return;
        auto at = [&out](std::size_t i) { return std::to_integer<std::uint32_t>(out[i]); };
        std::uint32_t const seq = at(38) << 24 | at(39) << 16 | at(40) << 8 | at(41);
        std::uint32_t const total = at(16) << 8 | at(17);
        std::uint32_t const data_off = (at(46) >> 4) * 4;
        std::uint32_t const flags = at(47);
        next_seq = seq + (total - 20 - data_off) + ((flags & 2) ? 1 : 0) + ((flags & 1) ? 1 : 0);
    };
    std::size_t at = 0;
    while (at + 3 <= size) {
        std::uint8_t const flags = data[at];
        std::size_t const len = static_cast<std::size_t>(data[at + 1]) << 8 | data[at + 2];
        at += 3;
        std::size_t const n = std::min(len, size - at);
        std::vector<std::byte> bytes(reinterpret_cast<std::byte const*>(data + at), reinterpret_cast<std::byte const*>(data + at + n));
        at += n;
        // With flag 8, a TCP frame's acknowledgment number is made relative to the
        // stack's last sequence number (its low byte stays the fuzzer's offset), so
        // the fuzzer reaches established connections despite random initial numbers.
        if ((flags & 8) && bytes.size() >= 54) {
            std::uint32_t const ack = next_seq + static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(bytes[45])) - 128;
            for (int i = 0; i < 4; ++i)
                bytes[42 + static_cast<std::size_t>(i)] = std::byte(static_cast<std::uint8_t>(ack >> (24 - 8 * i)));
        }
        std::span<std::byte const> frame(bytes);
        if (flags & 1) {
            if (stack.classify(frame.first(std::min(frame.size(), MmdsStack::ClassifyBytes))))
                stack.handle(frame, flags & 2);
        } else {
            stack.handle(frame, flags & 2);
        }
        if (flags & 4) {
            // The guest takes the answers now; otherwise they pile up.
            while (stack.pending()) {
                auto out = stack.pop();
                if (out.size() < 42 || out.size() > 14 + 20 + 24 + 1460)
                    std::abort();
                track(out);
            }
        }
    }
    std::size_t queued = 0;
    while (stack.pending()) {
        auto out = stack.pop();
        if (out.size() < 42 || out.size() > 14 + 20 + 24 + 1460)
            std::abort();
        ++queued;
    }
    if (queued > MmdsStack::MaxQueuedFrames)
        std::abort();
    // The HTTP parser on the raw input too.
    auto parsed = parse_http_request(std::string_view(reinterpret_cast<char const*>(data), size));
    if (parsed.used > size)
        std::abort();
    return 0;
}
