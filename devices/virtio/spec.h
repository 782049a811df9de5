// Constants from the virtio 1.2 specification shared by the virtio core, both
// transports and the devices: device status bits (§2.1), reserved feature bits
// (§6), split-virtqueue layout (§2.7) and device ids (§5).
// Not implemented anywhere in strata: packed virtqueues, VIRTIO_F_IN_ORDER,
// VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_RESET, shared memory regions.
// Threading: constants only.
#pragma once

#include <bit>
#include <cstdint>

namespace strata::virtio {

static_assert(std::endian::native == std::endian::little, "virtio 1.x structures are little-endian; strata runs on x86-64");

enum class DeviceId : std::uint32_t {
    Net = 1,
    Block = 2,
    Console = 3,
};

// Device status bits (§2.1).
namespace status {
inline constexpr std::uint8_t Acknowledge = 1;
inline constexpr std::uint8_t Driver = 2;
inline constexpr std::uint8_t DriverOk = 4;
inline constexpr std::uint8_t FeaturesOk = 8;
inline constexpr std::uint8_t DeviceNeedsReset = 64;
inline constexpr std::uint8_t Failed = 128;
} // namespace status

// Reserved feature bits (§6) that the core implements.
namespace feature {
inline constexpr std::uint64_t RingIndirectDesc = 1ULL << 28;
inline constexpr std::uint64_t RingEventIdx = 1ULL << 29;
inline constexpr std::uint64_t Version1 = 1ULL << 32;
} // namespace feature

// Split virtqueue layout (§2.7).
inline constexpr std::uint16_t MaxQueueSize = 32768;
inline constexpr std::uint16_t DescFlagNext = 1;
inline constexpr std::uint16_t DescFlagWrite = 2;
inline constexpr std::uint16_t DescFlagIndirect = 4;
inline constexpr std::uint16_t AvailFlagNoInterrupt = 1;
inline constexpr std::uint16_t UsedFlagNoNotify = 1;
inline constexpr std::uint64_t DescSize = 16;
inline constexpr std::uint64_t DescAlign = 16;
inline constexpr std::uint64_t AvailAlign = 2;
inline constexpr std::uint64_t UsedAlign = 4;

// Bytes of each ring part for a queue of size n, including the event-index word.
inline constexpr std::uint64_t desc_table_bytes(std::uint16_t n) { return DescSize * n; }
inline constexpr std::uint64_t avail_ring_bytes(std::uint16_t n) { return 6 + 2ULL * n; }
inline constexpr std::uint64_t used_ring_bytes(std::uint16_t n) { return 6 + 8ULL * n; }

// The vector value that means "no MSI-X vector" (virtio-pci §4.1.5.1.2).
inline constexpr std::uint16_t NoVector = 0xffff;

} // namespace strata::virtio
