#include "devices/virtio/blk/request.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace strata::virtio::blk {

namespace {

struct Seg {
    std::uint64_t gpa;
    std::uint64_t len;
};

// Calls fn(gpa, len) for each piece of the byte stream segs covering
// [offset, offset + length). The caller guarantees the range lies in the stream.
template<typename Fn>
bool for_range(std::vector<Seg> const& segs, std::uint64_t offset, std::uint64_t length, Fn&& fn)
{
    for (auto const& s : segs) {
        if (length == 0)
            break;
        if (offset >= s.len) {
            offset -= s.len;
            continue;
        }
        std::uint64_t const take = std::min(s.len - offset, length);
        if (!fn(s.gpa + offset, take))
            return false;
        offset = 0;
        length -= take;
    }
    return length == 0;
}

bool read_stream(GuestMemory const& mem, std::vector<Seg> const& segs, std::uint64_t offset, std::span<std::byte> out)
{
    std::size_t done = 0;
    return for_range(segs, offset, out.size(), [&](std::uint64_t gpa, std::uint64_t len) {
        if (!mem.read_bytes(gpa, out.subspan(done, static_cast<std::size_t>(len))))
            return false;
        done += static_cast<std::size_t>(len);
        return true;
    });
}

void reject(BlkRequest& out, std::uint8_t status, char const* why)
{
    out.status = status;
    out.error = why;
}

// Resolves the data bytes [offset, offset + length) of a stream into out.data,
// enforcing the segment count and size limits.
void take_data(BlkRequest& out, GuestMemory const& mem, std::vector<Seg> const& segs, std::uint64_t offset,
    std::uint64_t length, BlkLimits const& limits)
{
    std::uint32_t count = 0;
    char const* why = nullptr;
    bool const fine = for_range(segs, offset, length, [&](std::uint64_t gpa, std::uint64_t len) {
        if (++count > limits.seg_max) {
            why = "more data segments than seg_max";
            return false;
        }
        if (len > limits.size_max) {
            why = "a data segment larger than size_max";
            return false;
        }
        if (!guest_iovecs(mem, gpa, len, out.data)) {
            why = "a data buffer outside guest memory";
            return false;
        }
        return true;
    });
    if (!fine)
        return reject(out, status_code::IoErr, why ? why : "data range outside the chain");
    // The used length (data_len + 1) is 32 bits.
    if (length >= std::numeric_limits<std::uint32_t>::max())
        return reject(out, status_code::IoErr, "data longer than the used length can count");
    out.data_len = length;
}

void check_range(BlkRequest& out, std::uint64_t capacity)
{
    if (out.data_len % SectorSize != 0)
        return reject(out, status_code::IoErr, "data length is not a multiple of 512");
    std::uint64_t const sectors = out.data_len / SectorSize;
    if (out.sector > capacity || sectors > capacity - out.sector)
        return reject(out, status_code::IoErr, "sector range beyond the disk capacity");
}

void take_ranges(BlkRequest& out, GuestMemory const& mem, std::vector<Seg> const& readable, std::uint64_t bytes,
    BlkLimits const& limits)
{
    bool const discard = out.type == request_type::Discard;
    std::uint32_t const max_seg = discard ? limits.max_discard_seg : limits.max_write_zeroes_seg;
    std::uint32_t const max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
    if (bytes == 0 || bytes % DiscardSegmentBytes != 0)
        return reject(out, status_code::IoErr, "discard/write-zeroes payload is not whole 16-byte segments");
    if (bytes / DiscardSegmentBytes > max_seg)
        return reject(out, status_code::IoErr, "more discard/write-zeroes segments than advertised");
    for (std::uint64_t off = 0; off < bytes; off += DiscardSegmentBytes) {
        std::array<std::byte, DiscardSegmentBytes> raw {};
        if (!read_stream(mem, readable, HeaderBytes + off, raw))
            return reject(out, status_code::IoErr, "discard/write-zeroes segment outside guest memory");
        std::uint64_t sector = 0;
        std::uint32_t num = 0;
        std::uint32_t flags = 0;
        std::memcpy(&sector, raw.data(), 8);
        std::memcpy(&num, raw.data() + 8, 4);
        std::memcpy(&flags, raw.data() + 12, 4);
        // §5.2.6.2: unmap is meaningless for discard, and unknown flags are unsupported.
        std::uint32_t const allowed = discard ? 0 : WriteZeroesFlagUnmap;
        if (flags & ~allowed)
            return reject(out, status_code::Unsupp, "unsupported discard/write-zeroes flags");
        if (num == 0 || num > max_sectors)
            return reject(out, status_code::IoErr, "discard/write-zeroes segment of a bad sector count");
        if (sector > limits.capacity || num > limits.capacity - sector)
            return reject(out, status_code::IoErr, "discard/write-zeroes beyond the disk capacity");
        out.ranges.push_back(ZeroRange { sector * SectorSize, std::uint64_t(num) * SectorSize,
            (flags & WriteZeroesFlagUnmap) != 0 });
    }
}

} // namespace

bool guest_iovecs(GuestMemory const& mem, std::uint64_t gpa, std::uint64_t len, std::vector<iovec>& out)
{
    while (len > 0) {
        GuestMemory::Region const* hit = nullptr;
        for (auto const& r : mem.regions()) {
            if (gpa >= r.gpa && gpa - r.gpa < r.size) {
                hit = &r;
                break;
            }
        }
        if (!hit)
            return false;
        std::uint64_t const take = std::min(len, hit->size - (gpa - hit->gpa));
        auto s = mem.slice(gpa, take);
        if (!s)
            return false;
        out.push_back(iovec { s.value().data(), s.value().size() });
        gpa += take;
        len -= take;
    }
    return true;
}

std::uint32_t BlkRequest::used_len_ok(std::uint64_t id_written) const
{
    if (type == request_type::In)
        return static_cast<std::uint32_t>(data_len + 1);
    if (type == request_type::GetId)
        return static_cast<std::uint32_t>(id_written + 1);
    return 1;
}

BlkRequest BlkRequest::parse(DescriptorChain& chain, GuestMemory const& mem, BlkLimits const& limits)
{
    BlkRequest out;
    parse_into(chain, mem, limits, out);
    return out;
}

void BlkRequest::parse_into(DescriptorChain& chain, GuestMemory const& mem, BlkLimits const& limits, BlkRequest& out)
{
    out.type = 0;
    out.sector = 0;
    out.data.clear();
    out.data_len = 0;
    out.ranges.clear();
    out.status_gpa.reset();
    out.status = status_code::Ok;
    out.error = nullptr;

    // The two byte streams; kept per thread so parsing allocates only when a chain
    // is longer than any seen before.
    thread_local std::vector<Seg> readable;
    thread_local std::vector<Seg> writable;
    readable.clear();
    writable.clear();
    std::uint64_t readable_len = 0;
    std::uint64_t writable_len = 0;
    bool order_error = false;
    std::optional<Descriptor> last;
    while (true) {
        auto d = chain.next();
        if (!d)
            return reject(out, status_code::IoErr, "malformed descriptor chain");
        if (!d.value())
            break;
        Descriptor const desc = *d.value();
        last = desc;
        if (desc.writable) {
            writable.push_back(Seg { desc.addr, desc.len });
            writable_len += desc.len;
        } else {
            if (!writable.empty())
                order_error = true;
            readable.push_back(Seg { desc.addr, desc.len });
            readable_len += desc.len;
        }
    }
    if (!last || !last->writable || last->len == 0)
        return reject(out, status_code::IoErr, "no device-writable status byte at the end of the chain");
    std::uint64_t const status_gpa = last->addr + (last->len - 1);
    if (status_gpa < last->addr || !mem.slice(status_gpa, 1))
        return reject(out, status_code::IoErr, "status byte outside guest memory");
    out.status_gpa = status_gpa;
    if (order_error)
        return reject(out, status_code::IoErr, "device-readable descriptor after a device-writable one");
    if (readable_len < HeaderBytes)
        return reject(out, status_code::IoErr, "request header shorter than 16 bytes");
    std::array<std::byte, HeaderBytes> header {};
    if (!read_stream(mem, readable, 0, header))
        return reject(out, status_code::IoErr, "request header outside guest memory");
    std::memcpy(&out.type, header.data(), 4);
    std::memcpy(&out.sector, header.data() + 8, 8);

    std::uint64_t const readable_data = readable_len - HeaderBytes;
    std::uint64_t const writable_data = writable_len - 1;
    switch (out.type) {
    case request_type::In:
        if (readable_data != 0)
            return reject(out, status_code::IoErr, "read request with device-readable data");
        take_data(out, mem, writable, 0, writable_data, limits);
        if (!out.rejected())
            check_range(out, limits.capacity);
        return;
    case request_type::Out:
        if (limits.read_only)
            return reject(out, status_code::IoErr, "write to a read-only disk");
        if (writable_data != 0)
            return reject(out, status_code::IoErr, "write request with device-writable data");
        take_data(out, mem, readable, HeaderBytes, readable_data, limits);
        if (!out.rejected())
            check_range(out, limits.capacity);
        return;
    case request_type::Flush:
        return;
    case request_type::GetId:
        if (writable_data == 0)
            return reject(out, status_code::IoErr, "get-id request without a buffer");
        take_data(out, mem, writable, 0, std::min<std::uint64_t>(writable_data, IdBytes), limits);
        return;
    case request_type::Discard:
    case request_type::WriteZeroes: {
        bool const offered = out.type == request_type::Discard ? limits.discard : limits.write_zeroes;
        if (!offered)
            return reject(out, status_code::Unsupp, "discard/write-zeroes not offered");
        if (limits.read_only)
            return reject(out, status_code::IoErr, "discard/write-zeroes on a read-only disk");
        return take_ranges(out, mem, readable, readable_data, limits);
    }
    default:
        return reject(out, status_code::Unsupp, "unsupported request type");
    }
}

} // namespace strata::virtio::blk
