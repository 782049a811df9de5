// BlkRequest::parse over hand-built chains: the happy paths and every rule.
#include "devices/virtio/blk/request.h"
#include "tests/devices/virtio_test_driver.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace strata;
using namespace strata::virtio;
using namespace strata::virtio::blk;
using strata::test::Seg;
using strata::test::TestDriver;
using strata::test::TestMemory;

namespace {

struct Fixture {
    TestMemory ram { 4 << 20 };
    TestDriver drv { ram.mem(), 256, 0x1000, 0x10000 };
    BlkLimits limits { .capacity = 2048 };

    std::uint64_t header(std::uint32_t type, std::uint64_t sector)
    {
        std::uint64_t at = drv.alloc(16);
        (void)ram.mem().write<std::uint32_t>(at, type);
        (void)ram.mem().write<std::uint32_t>(at + 4, 0);
        (void)ram.mem().write<std::uint64_t>(at + 8, sector);
        return at;
    }
    BlkRequest parse(std::vector<Seg> const& segs)
    {
        auto head = drv.build_chain(segs);
        DescriptorChain c(ram.mem(), drv.desc_table(), drv.size(), head, true);
        return BlkRequest::parse(c, ram.mem(), limits);
    }
    BlkRequest parse_head(std::uint16_t head)
    {
        DescriptorChain c(ram.mem(), drv.desc_table(), drv.size(), head, true);
        return BlkRequest::parse(c, ram.mem(), limits);
    }
};

// The request was refused with this status and for the reason named: a refusal
// for another reason would hide that the rule under test is missing.
void refused(BlkRequest const& r, std::uint8_t status, std::string const& why)
{
    REQUIRE_MESSAGE(r.rejected(), "the request was accepted; expected: ", why);
    CHECK(r.status == status);
    REQUIRE(r.error != nullptr);
    std::string const error = r.error;
    INFO(error);
    CHECK(error.find(why) != std::string::npos);
}

void refused(BlkRequest const& r, std::string const& why)
{
    refused(r, status_code::IoErr, why);
}

} // namespace

TEST_CASE("IN request: header, data, status")
{
    Fixture f;
    auto data = f.drv.alloc(4096);
    auto status = f.drv.alloc(1);
    auto r = f.parse({ { f.header(request_type::In, 8), 16, false }, { data, 4096, true }, { status, 1, true } });
    CHECK(!r.rejected());
    CHECK(r.type == request_type::In);
    CHECK(r.sector == 8);
    CHECK(r.data_len == 4096);
    REQUIRE(r.data.size() == 1);
    CHECK(r.data[0].iov_base == f.ram.host(data));
    CHECK(r.status_gpa == status);
    CHECK(r.used_len_ok() == 4097);
}

TEST_CASE("OUT request with the header and data in one descriptor (any layout)")
{
    Fixture f;
    auto hdr = f.header(request_type::Out, 0);
    f.drv.alloc(512); // contiguous with the header
    auto status = f.drv.alloc(1);
    auto r = f.parse({ { hdr, 16 + 512, false }, { status, 1, true } });
    CHECK(!r.rejected());
    CHECK(r.data_len == 512);
    CHECK(r.data[0].iov_base == f.ram.host(hdr + 16));
    CHECK(r.used_len_ok() == 1);
}

TEST_CASE("IN data and status sharing the last descriptor")
{
    Fixture f;
    auto buf = f.drv.alloc(513);
    auto r = f.parse({ { f.header(request_type::In, 0), 16, false }, { buf, 513, true } });
    CHECK(!r.rejected());
    CHECK(r.data_len == 512);
    CHECK(r.status_gpa == buf + 512);
}

TEST_CASE("requests through an indirect table")
{
    Fixture f;
    auto data = f.drv.alloc(1024);
    auto status = f.drv.alloc(1);
    auto head = f.drv.build_indirect(
        { { f.header(request_type::In, 1), 16, false }, { data, 512, true }, { data + 512, 512, true }, { status, 1, true } });
    auto r = f.parse_head(head);
    CHECK(!r.rejected());
    CHECK(r.data.size() == 2);
    CHECK(r.data_len == 1024);
}

TEST_CASE("missing, read-only or zero-length status descriptor: no status to write")
{
    Fixture f;
    auto hdr = f.header(request_type::Flush, 0);
    auto status = f.drv.alloc(1);
    auto r = f.parse({ { hdr, 16, false } });
    refused(r, "no device-writable status byte at the end of the chain");
    CHECK(!r.status_gpa);
    r = f.parse({ { hdr, 16, false }, { status, 1, false } });
    refused(r, "no device-writable status byte at the end of the chain");
    CHECK(!r.status_gpa);
    r = f.parse({ { hdr, 16, false }, { status, 0, true } });
    refused(r, "no device-writable status byte at the end of the chain");
    CHECK(!r.status_gpa);
    // Status byte outside guest memory.
    r = f.parse({ { hdr, 16, false }, { 4 << 20, 1, true } });
    refused(r, "status byte outside guest memory");
    CHECK(!r.status_gpa);
    // The status address wrapping around 2^64.
    r = f.parse({ { hdr, 16, false }, { ~0ULL - 2, 8, true } });
    refused(r, "status byte outside guest memory");
    CHECK(!r.status_gpa);
}

TEST_CASE("a broken chain (loop) is rejected without a status")
{
    Fixture f;
    f.drv.set_desc(0, f.header(request_type::In, 0), 16, DescFlagNext, 1);
    f.drv.set_desc(1, f.drv.alloc(1), 1, DescFlagNext | DescFlagWrite, 0);
    auto r = f.parse_head(0);
    refused(r, "malformed descriptor chain");
    CHECK(!r.status_gpa);
}

TEST_CASE("wrong directions")
{
    Fixture f;
    auto data = f.drv.alloc(512);
    auto status = f.drv.alloc(1);
    // IN with a device-readable data buffer.
    auto r = f.parse({ { f.header(request_type::In, 0), 16, false }, { data, 512, false }, { status, 1, true } });
    refused(r, "read request with device-readable data");
    CHECK(r.status_gpa == status);
    // OUT with a device-writable data buffer.
    r = f.parse({ { f.header(request_type::Out, 0), 16, false }, { data, 512, true }, { status, 1, true } });
    refused(r, "write request with device-writable data");
    // A readable descriptor after a writable one.
    r = f.parse({ { f.header(request_type::In, 0), 16, false }, { data, 512, true }, { data, 16, false },
        { status, 1, true } });
    refused(r, "device-readable descriptor after a device-writable one");
    // The header writable.
    r = f.parse({ { f.header(request_type::In, 0), 16, true }, { status, 1, true } });
    refused(r, "request header shorter than 16 bytes");
}

TEST_CASE("short header, odd lengths and capacity overflow")
{
    Fixture f;
    auto data = f.drv.alloc(4096);
    auto status = f.drv.alloc(1);
    refused(f.parse({ { f.header(request_type::In, 0), 8, false }, { status, 1, true } }), "request header shorter than 16 bytes");
    refused(f.parse({ { f.header(request_type::In, 0), 16, false }, { data, 100, true }, { status, 1, true } }),
        "data length is not a multiple of 512");
    // Exactly at the end is fine, one sector past is not.
    CHECK(!f.parse({ { f.header(request_type::In, 2047), 16, false }, { data, 512, true }, { status, 1, true } }).rejected());
    refused(f.parse({ { f.header(request_type::In, 2047), 16, false }, { data, 1024, true }, { status, 1, true } }),
        "sector range beyond the disk capacity");
    refused(f.parse({ { f.header(request_type::In, 2048), 16, false }, { data, 512, true }, { status, 1, true } }),
        "sector range beyond the disk capacity");
    // sector + len overflowing 64 bits.
    f.limits.capacity = ~0ULL;
    auto r = f.parse({ { f.header(request_type::Out, ~0ULL - 1), 16, false }, { data, 4096, false }, { status, 1, true } });
    refused(r, "sector range beyond the disk capacity");
}

TEST_CASE("data outside guest memory, seg_max and size_max")
{
    Fixture f;
    auto status = f.drv.alloc(1);
    auto r = f.parse({ { f.header(request_type::In, 0), 16, false }, { (4 << 20) - 512, 1024, true }, { status, 1, true } });
    refused(r, "a data buffer outside guest memory");
    f.limits.seg_max = 2;
    auto d = f.drv.alloc(2048);
    CHECK(!f.parse({ { f.header(request_type::In, 0), 16, false }, { d, 512, true }, { d + 512, 512, true }, { status, 1, true } })
               .rejected());
    refused(f.parse({ { f.header(request_type::In, 0), 16, false }, { d, 512, true }, { d + 512, 512, true },
                { d + 1024, 512, true }, { status, 1, true } }),
        "more data segments than seg_max");
    f.limits.size_max = 1024;
    refused(f.parse({ { f.header(request_type::In, 0), 16, false }, { d, 2048, true }, { status, 1, true } }),
        "a data segment larger than size_max");
}

TEST_CASE("a data buffer whose addr + len wraps around 2^64, in a direct descriptor and in an indirect table")
{
    // 0xffff_ffff_ffff_f000 + 0x2000 wraps to 0x1000, inside guest RAM: only an
    // overflow-safe range check refuses it.
    Fixture f;
    auto status = f.drv.alloc(1);
    std::uint64_t const wrapping = ~0ULL - 0xfff;
    for (bool write : { false, true }) {
        CAPTURE(write);
        std::uint32_t type = write ? request_type::Out : request_type::In;
        refused(f.parse({ { f.header(type, 0), 16, false }, { wrapping, 0x2000, !write }, { status, 1, true } }),
            "a data buffer outside guest memory");
        auto head = f.drv.build_indirect({ { f.header(type, 0), 16, false }, { wrapping, 0x2000, !write }, { status, 1, true } });
        auto r = f.parse_head(head);
        refused(r, "a data buffer outside guest memory");
        CHECK(r.status_gpa == status);
    }
    // The header itself wrapping.
    refused(f.parse({ { ~0ULL - 7, 16, false }, { status, 1, true } }), "request header outside guest memory");
}

TEST_CASE("a data buffer crossing two guest RAM regions becomes two iovecs")
{
    TestMemory a(1 << 20, 0);
    TestMemory b(1 << 20, 1 << 20);
    GuestMemory mem({ a.mem().regions()[0], b.mem().regions()[0] });
    std::vector<iovec> out;
    CHECK(guest_iovecs(mem, (1 << 20) - 512, 1024, out));
    REQUIRE(out.size() == 2);
    CHECK(out[0].iov_len == 512);
    CHECK(out[1].iov_base == b.host(1 << 20));
    out.clear();
    CHECK(!guest_iovecs(mem, (2 << 20) - 512, 1024, out));
}

TEST_CASE("read-only disks refuse writes, discards and write-zeroes but not reads or flushes")
{
    Fixture f;
    f.limits.read_only = true;
    auto data = f.drv.alloc(512);
    auto status = f.drv.alloc(1);
    auto r = f.parse({ { f.header(request_type::Out, 0), 16, false }, { data, 512, false }, { status, 1, true } });
    refused(r, "write to a read-only disk");
    CHECK(!f.parse({ { f.header(request_type::In, 0), 16, false }, { data, 512, true }, { status, 1, true } }).rejected());
    CHECK(!f.parse({ { f.header(request_type::Flush, 0), 16, false }, { status, 1, true } }).rejected());
}

TEST_CASE("GET_ID, unknown types")
{
    Fixture f;
    auto id = f.drv.alloc(20);
    auto status = f.drv.alloc(1);
    auto r = f.parse({ { f.header(request_type::GetId, 0), 16, false }, { id, 20, true }, { status, 1, true } });
    CHECK(!r.rejected());
    CHECK(r.data_len == 20);
    CHECK(r.used_len_ok(20) == 21);
    refused(f.parse({ { f.header(request_type::GetId, 0), 16, false }, { status, 1, true } }), "get-id request without a buffer");
    r = f.parse({ { f.header(99, 0), 16, false }, { status, 1, true } });
    refused(r, status_code::Unsupp, "unsupported request type");
    CHECK(r.status_gpa == status);
}

TEST_CASE("discard and write-zeroes segments")
{
    Fixture f;
    auto status = f.drv.alloc(1);
    auto segs = f.drv.alloc(64);
    auto seg = [&](int i, std::uint64_t sector, std::uint32_t num, std::uint32_t flags) {
        (void)f.ram.mem().write<std::uint64_t>(segs + 16ULL * static_cast<unsigned>(i), sector);
        (void)f.ram.mem().write<std::uint32_t>(segs + 16ULL * static_cast<unsigned>(i) + 8, num);
        (void)f.ram.mem().write<std::uint32_t>(segs + 16ULL * static_cast<unsigned>(i) + 12, flags);
    };
    seg(0, 8, 16, 0);
    seg(1, 100, 4, 0);
    auto r = f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 32, false }, { status, 1, true } });
    CHECK(!r.rejected());
    REQUIRE(r.ranges.size() == 2);
    CHECK(r.ranges[0].offset == 8 * 512);
    CHECK(r.ranges[0].length == 16 * 512);
    // Unmap is valid for write-zeroes, unsupported for discard.
    seg(1, 100, 4, WriteZeroesFlagUnmap);
    refused(f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 32, false }, { status, 1, true } }),
        status_code::Unsupp, "unsupported discard/write-zeroes flags");
    r = f.parse({ { f.header(request_type::WriteZeroes, 0), 16, false }, { segs, 32, false }, { status, 1, true } });
    CHECK(!r.rejected());
    CHECK(r.ranges[1].unmap);
    // Partial segment, too many segments, beyond capacity, zero sectors.
    refused(f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 20, false }, { status, 1, true } }),
        "discard/write-zeroes payload is not whole 16-byte segments");
    f.limits.max_discard_seg = 1;
    refused(f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 32, false }, { status, 1, true } }),
        "more discard/write-zeroes segments than advertised");
    seg(0, 2040, 16, 0);
    refused(f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 16, false }, { status, 1, true } }),
        "discard/write-zeroes beyond the disk capacity");
    seg(0, 0, 0, 0);
    refused(f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 16, false }, { status, 1, true } }),
        "discard/write-zeroes segment of a bad sector count");
    // Not offered.
    seg(0, 0, 1, 0);
    f.limits.discard = false;
    refused(f.parse({ { f.header(request_type::Discard, 0), 16, false }, { segs, 16, false }, { status, 1, true } }),
        status_code::Unsupp, "discard/write-zeroes not offered");
}

TEST_CASE("a huge chain through a 32768-entry queue parses within its TTL")
{
    TestMemory ram(16 << 20);
    TestDriver drv(ram.mem(), 32768, 0x1000, 0x200000);
    BlkLimits limits { .capacity = 1 << 20, .seg_max = 40000 };
    std::vector<Seg> segs;
    std::uint64_t hdr = drv.alloc(16);
    (void)ram.mem().write<std::uint32_t>(hdr, request_type::In);
    segs.push_back({ hdr, 16, false });
    std::uint64_t data = drv.alloc(512);
    for (int i = 0; i < 32766; ++i)
        segs.push_back({ data, 512, true });
    segs.push_back({ drv.alloc(1), 1, true });
    auto head = drv.build_chain(segs);
    DescriptorChain c(ram.mem(), drv.desc_table(), drv.size(), head, true);
    auto r = BlkRequest::parse(c, ram.mem(), limits);
    CHECK(!r.rejected());
    CHECK(r.data.size() == 32766);
}
