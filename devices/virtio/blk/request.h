// BlkRequest::parse: turns one descriptor chain into a checked virtio-blk request
// (virtio 1.2 §5.2.6) without side effects (STYLE.md point 8). Nothing here
// touches the disk; the I/O engine executes what parse accepted.
//
// The chain is read as the spec's message framing allows (§2.6.4, any layout): the
// device-readable descriptors form one byte stream (16-byte header, then OUT data or
// discard/write-zeroes segments), the device-writable ones another (IN/GET_ID data,
// then the status byte, the last byte of the last descriptor). Checks:
// - the chain walk itself (indexes, TTL, indirect rules: DescriptorChain);
// - no device-readable descriptor after a device-writable one;
// - the last descriptor is device-writable and at least 1 byte (the status); if not,
//   the request cannot even be answered and completes with 0 bytes written;
// - at least a full header; IN carries no readable data and OUT no writable data;
// - IN/OUT lengths are multiples of 512 and sector + length fits the capacity, with
//   overflow-safe arithmetic; at most seg_max data segments of at most size_max
//   bytes each; every data byte lies in guest memory (resolved to host iovecs here,
//   split where a segment crosses guest RAM regions);
// - writes, discards and write-zeroes on a read-only disk fail with S_IOERR;
// - discard/write-zeroes segments: count, sectors per segment, range, flags;
// - unknown request types fail with S_UNSUPP.
// A rejected request has status != S_OK and error set; it still names its head and
// (when one exists) its status byte, so it completes exactly once like any other.
//
// Threading: parse is a pure function of its arguments and guest memory.
#pragma once

#include "devices/guest_memory.h"
#include "devices/virtio/blk/config.h"
#include "devices/virtio/descriptor_chain.h"

#include <cstdint>
#include <optional>
#include <sys/uio.h>
#include <vector>

namespace strata::virtio::blk {

// One discard or write-zeroes range, in bytes.
struct ZeroRange {
    std::uint64_t offset;
    std::uint64_t length;
    bool unmap;
};

struct BlkRequest {
    std::uint32_t type { 0 };
    std::uint64_t sector { 0 };
    std::vector<iovec> data;      // host buffers of the data bytes (IN, OUT, GET_ID)
    std::uint64_t data_len { 0 };
    std::vector<ZeroRange> ranges; // DISCARD, WRITE_ZEROES
    std::optional<std::uint64_t> status_gpa;
    std::uint8_t status { status_code::Ok }; // not Ok: rejected, do not execute
    char const* error { nullptr };           // why it was rejected (static text)

    bool rejected() const { return status != status_code::Ok; }
    // Bytes the device writes into the chain when the request succeeds.
    std::uint32_t used_len_ok(std::uint64_t id_written = 0) const;

    [[nodiscard]] static BlkRequest parse(DescriptorChain& chain, GuestMemory const& mem, BlkLimits const& limits);
    // The same, reusing out's buffers (the I/O engine keeps one per slot).
    static void parse_into(DescriptorChain& chain, GuestMemory const& mem, BlkLimits const& limits, BlkRequest& out);
};

// Appends host iovecs for guest bytes [gpa, gpa + len), splitting at region
// boundaries; false if any byte is outside guest memory.
[[nodiscard]] bool guest_iovecs(GuestMemory const& mem, std::uint64_t gpa, std::uint64_t len, std::vector<iovec>& out);

} // namespace strata::virtio::blk
