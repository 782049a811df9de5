// virtio-blk device configuration (virtio 1.2 §5.2): feature bits, request types
// and status codes, the configuration space layout, and BlkOptions, the knobs the
// VMM sets per disk. The limits the device advertises here are the same ones the
// request parser enforces (BlkLimits), so a driver that follows the config never
// sees a request refused.
// Not implemented: GEOMETRY, TOPOLOGY, CONFIG_WCE (the cache is write-through from
// the guest's view: FLUSH is honoured, writeback is not toggleable), SECURE_ERASE,
// GET_LIFETIME, zoned devices.
// Threading: plain values.
#pragma once

#include "base/rate_limiter.h"

#include <cstddef>
#include <memory>
#include <cstdint>
#include <string>

namespace strata::virtio::blk {

namespace feature {
inline constexpr std::uint64_t SizeMax = 1ULL << 1;
inline constexpr std::uint64_t SegMax = 1ULL << 2;
inline constexpr std::uint64_t Ro = 1ULL << 5;
inline constexpr std::uint64_t BlkSize = 1ULL << 6;
inline constexpr std::uint64_t Flush = 1ULL << 9;
inline constexpr std::uint64_t Mq = 1ULL << 12;
inline constexpr std::uint64_t Discard = 1ULL << 13;
inline constexpr std::uint64_t WriteZeroes = 1ULL << 14;
} // namespace feature

namespace request_type {
inline constexpr std::uint32_t In = 0;
inline constexpr std::uint32_t Out = 1;
inline constexpr std::uint32_t Flush = 4;
inline constexpr std::uint32_t GetId = 8;
inline constexpr std::uint32_t Discard = 11;
inline constexpr std::uint32_t WriteZeroes = 13;
} // namespace request_type

namespace status_code {
inline constexpr std::uint8_t Ok = 0;
inline constexpr std::uint8_t IoErr = 1;
inline constexpr std::uint8_t Unsupp = 2;
} // namespace status_code

inline constexpr std::uint64_t SectorSize = 512;
inline constexpr std::size_t IdBytes = 20;
inline constexpr std::uint64_t HeaderBytes = 16; // struct virtio_blk_req's type, reserved, sector
inline constexpr std::uint64_t DiscardSegmentBytes = 16;
inline constexpr std::uint32_t WriteZeroesFlagUnmap = 1;

// struct virtio_blk_config (§5.2.4), little-endian, as the driver reads it.
struct ConfigSpace {
    std::uint64_t capacity;        // 0x00 in 512-byte sectors
    std::uint32_t size_max;        // 0x08
    std::uint32_t seg_max;         // 0x0c
    std::uint16_t cylinders;       // 0x10 geometry (not offered)
    std::uint8_t heads;            // 0x12
    std::uint8_t sectors;          // 0x13
    std::uint32_t blk_size;        // 0x14
    std::uint8_t physical_block_exp; // 0x18 topology (not offered)
    std::uint8_t alignment_offset; // 0x19
    std::uint16_t min_io_size;     // 0x1a
    std::uint32_t opt_io_size;     // 0x1c
    std::uint8_t writeback;        // 0x20
    std::uint8_t unused0;          // 0x21
    std::uint16_t num_queues;      // 0x22
    std::uint32_t max_discard_sectors; // 0x24
    std::uint32_t max_discard_seg; // 0x28
    std::uint32_t discard_sector_alignment; // 0x2c
    std::uint32_t max_write_zeroes_sectors; // 0x30
    std::uint32_t max_write_zeroes_seg; // 0x34
    std::uint8_t write_zeroes_may_unmap; // 0x38
    std::uint8_t unused1[3];       // 0x39
    std::uint32_t max_secure_erase_sectors; // 0x3c
    std::uint32_t max_secure_erase_seg; // 0x40
    std::uint32_t secure_erase_sector_alignment; // 0x44
};
static_assert(sizeof(ConfigSpace) == 0x48);
static_assert(offsetof(ConfigSpace, num_queues) == 0x22);
static_assert(offsetof(ConfigSpace, write_zeroes_may_unmap) == 0x38);

struct BlkOptions {
    std::string id;               // GET_ID answer; at most 20 bytes are used
    bool read_only { false };     // also forced when the backend is read-only
    std::uint16_t num_queues { 1 }; // more than 1 offers VIRTIO_BLK_F_MQ
    std::uint16_t queue_size { 256 };
    std::uint32_t seg_max { 0 };  // 0: queue_size - 2
    std::uint32_t size_max { 1U << 20 };
    std::uint32_t blk_size { 512 };
    bool discard { true };
    bool write_zeroes { true };
    std::uint32_t max_discard_sectors { 1U << 22 };
    std::uint32_t max_discard_seg { 16 };
    std::uint32_t max_write_zeroes_sectors { 1U << 22 };
    std::uint32_t max_write_zeroes_seg { 16 };
    // Throttles the device's requests (base/rate_limiter.h); null: a limiter of
    // its own, unlimited until set_rate_limit. Several disks may share one.
    std::shared_ptr<RateLimiter> rate_limiter {};
};

// What the parser enforces, derived from the options and the disk.
struct BlkLimits {
    std::uint64_t capacity { 0 }; // sectors
    bool read_only { false };
    std::uint32_t seg_max { 254 };
    std::uint32_t size_max { 1U << 20 };
    bool discard { true };
    std::uint32_t max_discard_sectors { 1U << 22 };
    std::uint32_t max_discard_seg { 16 };
    bool write_zeroes { true };
    std::uint32_t max_write_zeroes_sectors { 1U << 22 };
    std::uint32_t max_write_zeroes_seg { 16 };
};

} // namespace strata::virtio::blk
