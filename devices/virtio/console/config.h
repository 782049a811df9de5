// virtio-console constants (virtio 1.2 §5.3): device id, feature bits, queue
// numbers and the configuration space layout, plus ConsoleOptions, the knobs the
// VMM sets. strata offers one port and none of the console-specific features, so
// the configuration space reads as zeros and Linux binds the port to /dev/hvc0.
// Not implemented: VIRTIO_CONSOLE_F_SIZE (no terminal size), F_MULTIPORT (no
// control queues, one port only), F_EMERG_WRITE.
// Threading: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace strata::virtio::console {

inline constexpr std::uint32_t DeviceId = 3;

// Device-specific feature bits (§5.3.3), listed so that the code can say what it
// does not offer.
namespace feature {
inline constexpr std::uint64_t Size = 1ULL << 0;
inline constexpr std::uint64_t Multiport = 1ULL << 1;
inline constexpr std::uint64_t EmergWrite = 1ULL << 2;
} // namespace feature

// Without MULTIPORT the device has exactly these two queues (§5.3.2).
inline constexpr std::uint16_t ReceiveQueue = 0;  // receiveq0: host -> guest (device-writable buffers)
inline constexpr std::uint16_t TransmitQueue = 1; // transmitq0: guest -> host (device-readable buffers)
inline constexpr std::uint16_t QueueCount = 2;

// struct virtio_console_config (§5.3.4). Every field is meaningful only with a
// feature strata does not offer, so the driver never reads them; they are zero.
struct ConfigSpace {
    std::uint16_t cols;         // 0x00 with F_SIZE
    std::uint16_t rows;         // 0x02 with F_SIZE
    std::uint32_t max_nr_ports; // 0x04 with F_MULTIPORT
    std::uint32_t emerg_wr;     // 0x08 with F_EMERG_WRITE
};
static_assert(sizeof(ConfigSpace) == 12);

struct ConsoleOptions {
    std::string name { "console" }; // for log messages
    std::uint16_t queue_size { 256 };
    // Host -> guest bytes held until the guest posts receive buffers. write()
    // accepts at most what fits; the rest is refused (never silently dropped).
    std::size_t host_buffer_bytes { 64 * 1024 };
};

} // namespace strata::virtio::console
