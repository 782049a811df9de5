// virtio-blk over virtio-mmio against a real raw file through the imaging engine's
// RawBackend (io_uring): data reaches the file, flushes and discards reach the
// backend, and a paused device lets the VMM drive the backend from its own thread.
#include "devices/virtio/blk/device.h"
#include "devices/virtio/mmio.h"
#include "imaging/raw_backend.h"
#include "tests/devices/virtio_blk_harness.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>

using namespace strata;
using namespace strata::virtio;
using namespace strata::test;
namespace blk = strata::virtio::blk;

namespace {

struct TempFile {
    std::string path;
    explicit TempFile(std::uint64_t size)
    {
        // Under the build directory (a real file system, where O_DIRECT works),
        // rather than a tmpfs /tmp.
        std::string tmpl = std::string(STRATA_BUILD_DIR) + "/virtio-raw-XXXXXX";
        int fd = ::mkstemp(tmpl.data());
        REQUIRE(fd >= 0);
        REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
        ::close(fd);
        path = tmpl;
    }
    ~TempFile() { ::unlink(path.c_str()); }
    std::vector<std::byte> read(std::uint64_t offset, std::size_t len) const
    {
        std::vector<std::byte> out(len);
        int fd = ::open(path.c_str(), O_RDONLY);
        CHECK(::pread(fd, out.data(), len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len));
        ::close(fd);
        return out;
    }
};

struct Mmio {
    MmioTransport& t;
    std::uint32_t rd(std::uint64_t off)
    {
        std::uint32_t v = 0;
        t.read(off, std::as_writable_bytes(std::span(&v, 1)));
        return v;
    }
    void wr(std::uint64_t off, std::uint32_t v) { t.write(off, std::as_bytes(std::span(&v, 1))); }
};

void init(Mmio m, QueueConfig const& cfg)
{
    std::uint64_t const features = feature::Version1 | feature::RingEventIdx | blk::feature::Flush
        | blk::feature::Discard | blk::feature::WriteZeroes;
    m.wr(0x70, status::Acknowledge | status::Driver);
    m.wr(0x24, 0);
    m.wr(0x20, static_cast<std::uint32_t>(features));
    m.wr(0x24, 1);
    m.wr(0x20, static_cast<std::uint32_t>(features >> 32));
    m.wr(0x70, status::Acknowledge | status::Driver | status::FeaturesOk);
    m.wr(0x30, 0);
    m.wr(0x38, cfg.size);
    m.wr(0x80, static_cast<std::uint32_t>(cfg.desc));
    m.wr(0x90, static_cast<std::uint32_t>(cfg.driver));
    m.wr(0xa0, static_cast<std::uint32_t>(cfg.device));
    m.wr(0x44, 1);
    m.wr(0x70, status::Acknowledge | status::Driver | status::FeaturesOk | status::DriverOk);
}

} // namespace

TEST_CASE("virtio-blk over mmio on a raw file through io_uring")
{
    TempFile file(4 << 20);
    auto backend = RawBackend::open(file.path).value();
    TestMemory ram(16 << 20);
    TestDriver drv(ram.mem(), 128, 0x1000, 0x100000);
    CountingLine irq;
    auto dev = blk::VirtioBlk::create(*backend, { .id = "raw0" }).value();
    auto t = MmioTransport::create(*dev, ram.mem(), irq, 0xd0000000, 5).value();
    Mmio m { *t };
    BlkGuest guest(ram, drv, [&] { m.wr(0x50, 0); });
    init(m, drv.config());
    REQUIRE((m.rd(0x70) & status::DriverOk));

    // 1 MiB in one request, an unaligned guest buffer on purpose (the engine bounces).
    std::uint64_t buf = drv.alloc((1 << 20) + 512, 4096) + 512;
    for (std::uint32_t i = 0; i < (1 << 20); ++i)
        ram.host(buf)[i] = std::byte(i * 31 + 7);
    auto w = guest.run(blk::request_type::Out, 2048, buf, 1 << 20, true);
    REQUIRE(w.completed);
    CHECK(w.status == blk::status_code::Ok);
    CHECK(guest.run(blk::request_type::Flush, 0, 0, 0, true).status == blk::status_code::Ok);
    auto on_disk = file.read(2048 * 512, 1 << 20);
    CHECK(std::memcmp(on_disk.data(), ram.host(buf), 1 << 20) == 0);

    // Many small reads in one batch (3 descriptors each: 40 fit a 128-entry queue).
    std::uint64_t back = drv.alloc(40 * 4096, 4096);
    for (unsigned i = 0; i < 40; ++i)
        guest.queue(blk::request_type::In, 2048 + 8ULL * i, back + 4096ULL * i, 4096, false);
    guest.notify();
    REQUIRE(guest.wait_all());
    CHECK(std::memcmp(ram.host(back), ram.host(buf), 40 * 4096) == 0);

    // Discard reads back as zeros.
    std::uint64_t seg = drv.alloc(16);
    (void)ram.mem().write<std::uint64_t>(seg, 2048);
    (void)ram.mem().write<std::uint32_t>(seg + 8, 16);
    (void)ram.mem().write<std::uint32_t>(seg + 12, 0);
    CHECK(guest.run(blk::request_type::Discard, 0, seg, 16, true).status == blk::status_code::Ok);
    auto zeros = file.read(2048 * 512, 8192);
    CHECK(std::all_of(zeros.begin(), zeros.end(), [](std::byte b) { return b == std::byte { 0 }; }));

    // Paused: the VMM drives the backend itself, then resumes the device.
    dev->pause();
    CHECK(flush_sync(*backend));
    std::vector<std::byte> vmm_buf(512, std::byte { 0xab });
    CHECK(write_sync(*backend, 0, vmm_buf));
    dev->resume();
    std::uint64_t b0 = drv.alloc(512, 512);
    CHECK(guest.run(blk::request_type::In, 0, b0, 512, false).status == blk::status_code::Ok);
    CHECK(ram.host(b0)[100] == std::byte { 0xab });

    auto metrics = dev->metrics();
    CHECK(metrics.errors == 0);
    CHECK(metrics.bytes_written == (1 << 20));
    CHECK(metrics.bytes_read == 40 * 4096 + 512);
    m.wr(0x70, 0);
}
