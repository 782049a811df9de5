// virtio-mmio v2 + virtio-blk, driven through the BusDevice interface exactly as a
// guest driver would: registers, feature negotiation, queue setup, requests over an
// in-memory backend, reset mid-flight, pause/resume with requests in flight.
#include "devices/virtio/blk/device.h"
#include "devices/virtio/mmio.h"
#include "tests/devices/stderr_capture.h"
#include "tests/devices/virtio_blk_harness.h"
#include "tests/devices/virtio_fake_backend.h"

#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <thread>

using namespace strata;
using namespace strata::virtio;
using namespace strata::test;
namespace blk = strata::virtio::blk;

namespace {

constexpr std::uint64_t Base = 0xd0000000;

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

struct Rig {
    TestMemory ram { 8 << 20 };
    TestDriver drv { ram.mem(), 64, 0x1000, 0x100000 };
    MemBackend backend { 1 << 20 };
    CountingLine irq;
    std::unique_ptr<blk::VirtioBlk> dev;
    std::unique_ptr<MmioTransport> transport;
    std::optional<Mmio> regs;
    std::optional<BlkGuest> guest;

    explicit Rig(blk::BlkOptions options = { .id = "disk-0" }, unsigned depth = 64)
        : backend(1 << 20, depth)
    {
        dev = blk::VirtioBlk::create(backend, options).value();
        transport = MmioTransport::create(*dev, ram.mem(), irq, Base, 5).value();
        regs.emplace(Mmio { *transport });
        guest.emplace(ram, drv, [this] { regs->wr(0x50, 0); });
    }

    // The driver initialization sequence of §3.1.1 / §4.2.3; returns the status read back.
    std::uint32_t init(std::uint64_t features)
    {
        regs->wr(0x70, 0);
        regs->wr(0x70, status::Acknowledge);
        regs->wr(0x70, status::Acknowledge | status::Driver);
        regs->wr(0x24, 0);
        regs->wr(0x20, static_cast<std::uint32_t>(features));
        regs->wr(0x24, 1);
        regs->wr(0x20, static_cast<std::uint32_t>(features >> 32));
        regs->wr(0x70, status::Acknowledge | status::Driver | status::FeaturesOk);
        if (!(regs->rd(0x70) & status::FeaturesOk))
            return regs->rd(0x70);
        auto cfg = drv.config();
        regs->wr(0x30, 0);
        regs->wr(0x38, cfg.size);
        regs->wr(0x80, static_cast<std::uint32_t>(cfg.desc));
        regs->wr(0x84, static_cast<std::uint32_t>(cfg.desc >> 32));
        regs->wr(0x90, static_cast<std::uint32_t>(cfg.driver));
        regs->wr(0x94, 0);
        regs->wr(0xa0, static_cast<std::uint32_t>(cfg.device));
        regs->wr(0xa4, 0);
        regs->wr(0x44, 1);
        regs->wr(0x70, status::Acknowledge | status::Driver | status::FeaturesOk | status::DriverOk);
        return regs->rd(0x70);
    }
    std::uint64_t device_features()
    {
        regs->wr(0x14, 0);
        std::uint64_t lo = regs->rd(0x10);
        regs->wr(0x14, 1);
        return lo | (std::uint64_t(regs->rd(0x10)) << 32);
    }
};

constexpr std::uint64_t Wanted = feature::Version1 | feature::RingEventIdx | feature::RingIndirectDesc | blk::feature::Flush
    | blk::feature::Discard | blk::feature::WriteZeroes | blk::feature::BlkSize | blk::feature::SegMax | blk::feature::SizeMax;

} // namespace

TEST_CASE("mmio identification registers and blk config")
{
    Rig rig;
    CHECK(rig.regs->rd(0x000) == 0x74726976);
    CHECK(rig.regs->rd(0x004) == 2);
    CHECK(rig.regs->rd(0x008) == 2);
    CHECK(rig.regs->rd(0x034) == 256);
    CHECK(rig.regs->rd(0x0b0) == 0xffffffff);
    // Capacity in sectors at config offset 0, readable in any width.
    CHECK(rig.regs->rd(0x100) == (1 << 20) / 512);
    std::uint64_t cap = 0;
    rig.transport->read(0x100, std::as_writable_bytes(std::span(&cap, 1)));
    CHECK(cap == 2048);
    CHECK(rig.regs->rd(0x100 + 0x0c) == 254); // seg_max = queue size - 2
    CHECK(rig.regs->rd(0x100 + 0x14) == 512);
    auto f = rig.device_features();
    CHECK((f & feature::Version1));
    CHECK((f & blk::feature::Flush));
    CHECK(!(f & blk::feature::Ro));
    CHECK(rig.transport->cmdline_entry() == "virtio_mmio.device=512@0xd0000000:5");
    auto n = rig.transport->notifiers();
    REQUIRE(n.size() == 1);
    CHECK(n[0].address == Base + 0x50);
    CHECK(n[0].datamatch == 0);
    CHECK(n[0].eventfd >= 0);
}

TEST_CASE("feature negotiation refuses unknown features and a missing VERSION_1")
{
    Rig rig;
    CHECK(!(rig.init(Wanted & ~feature::Version1) & status::FeaturesOk));
    CHECK(!(rig.init(Wanted | (1ULL << 40)) & status::FeaturesOk));
    auto s = rig.init(Wanted);
    CHECK((s & status::FeaturesOk));
    CHECK((s & status::DriverOk));
    CHECK(rig.dev->active());
    // Writing status 0 resets: the I/O thread stops.
    rig.regs->wr(0x70, 0);
    CHECK(rig.regs->rd(0x70) == 0);
    CHECK(!rig.dev->active());
}

TEST_CASE("a queue with a bad size makes DRIVER_OK fail with DEVICE_NEEDS_RESET")
{
    Rig rig;
    rig.regs->wr(0x70, status::Acknowledge | status::Driver);
    rig.regs->wr(0x24, 1);
    rig.regs->wr(0x20, 1);
    rig.regs->wr(0x70, status::Acknowledge | status::Driver | status::FeaturesOk);
    rig.regs->wr(0x30, 0);
    rig.regs->wr(0x38, 48); // not a power of 2
    rig.regs->wr(0x44, 1);
    rig.regs->wr(0x70, status::Acknowledge | status::Driver | status::FeaturesOk | status::DriverOk);
    CHECK((rig.regs->rd(0x70) & status::DeviceNeedsReset));
    CHECK((rig.regs->rd(0x60) & 2));
    CHECK(!rig.dev->active());
}

TEST_CASE("write, flush, read back, get-id, write-zeroes round trip over mmio")
{
    Rig rig;
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    auto buf = rig.drv.alloc(8192, 4096);
    for (int i = 0; i < 8192; ++i)
        (void)rig.ram.mem().write<std::uint8_t>(buf + static_cast<unsigned>(i), static_cast<std::uint8_t>(i * 7));
    auto w = rig.guest->run(blk::request_type::Out, 16, buf, 8192, true);
    REQUIRE(w.completed);
    CHECK(w.status == blk::status_code::Ok);
    CHECK(w.used_len == 1);
    CHECK(std::to_integer<int>(rig.backend.disk()[16 * 512 + 1]) == 7);
    CHECK(rig.guest->run(blk::request_type::Flush, 0, 0, 0, true).status == blk::status_code::Ok);
    CHECK(rig.backend.flushes == 1);

    auto back = rig.drv.alloc(8192, 4096);
    auto r = rig.guest->run(blk::request_type::In, 16, back, 8192, false);
    CHECK(r.status == blk::status_code::Ok);
    CHECK(r.used_len == 8193);
    CHECK(std::memcmp(rig.ram.host(buf), rig.ram.host(back), 8192) == 0);

    auto id = rig.drv.alloc(20);
    auto g = rig.guest->run(blk::request_type::GetId, 0, id, 20, false);
    CHECK(g.status == blk::status_code::Ok);
    CHECK(std::memcmp(rig.ram.host(id), "disk-0\0\0", 8) == 0);

    // Write-zeroes over the first 4 KiB of what we wrote.
    auto seg = rig.drv.alloc(16);
    (void)rig.ram.mem().write<std::uint64_t>(seg, 16);
    (void)rig.ram.mem().write<std::uint32_t>(seg + 8, 8);
    (void)rig.ram.mem().write<std::uint32_t>(seg + 12, 0);
    CHECK(rig.guest->run(blk::request_type::WriteZeroes, 0, seg, 16, true).status == blk::status_code::Ok);
    CHECK(std::to_integer<int>(rig.backend.disk()[16 * 512 + 1]) == 0);
    CHECK(std::to_integer<int>(rig.backend.disk()[24 * 512 + 1]) != 0);

    auto m = rig.dev->metrics();
    CHECK(m.write_requests == 1);
    CHECK(m.read_requests == 1);
    CHECK(m.bytes_written == 8192);
    CHECK(m.bytes_read == 8192);
    CHECK(m.errors == 0);
    // Interrupts were raised and are acknowledged through InterruptACK.
    CHECK(rig.irq.count > 0);
    CHECK((rig.regs->rd(0x60) & 1));
    rig.regs->wr(0x64, 1);
    CHECK(!(rig.regs->rd(0x60) & 1));
}

TEST_CASE("bad requests complete with an error status and the device keeps going")
{
    strata::test::StderrCapture log;
    Rig rig;
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    auto buf = rig.drv.alloc(4096, 4096);
    auto r = rig.guest->run(blk::request_type::In, 2047, buf, 4096, false); // beyond capacity
    CHECK(r.completed);
    CHECK(r.status == blk::status_code::IoErr);
    CHECK(rig.guest->run(77, 0, 0, 0, true).status == blk::status_code::Unsupp);
    rig.backend.fail_reads(true);
    CHECK(rig.guest->run(blk::request_type::In, 0, buf, 512, false).status == blk::status_code::IoErr);
    rig.backend.fail_reads(false);
    CHECK(rig.guest->run(blk::request_type::In, 0, buf, 512, false).status == blk::status_code::Ok);
    auto m = rig.dev->metrics();
    CHECK(m.errors == 3);
    CHECK(m.rejected == 2);
    CHECK(!(rig.regs->rd(0x70) & status::DeviceNeedsReset));
    // Each refusal for its own reason, named in the device's warnings.
    INFO(log.text());
    CHECK(log.eventually_contains("bad request at head 0: sector range beyond the disk capacity"));
    CHECK(log.eventually_contains(": unsupported request type"));
    CHECK(log.eventually_contains("I/O error"));
}

TEST_CASE("read-only disks: RO feature offered, writes fail with IOERR")
{
    Rig rig({ .id = "ro", .read_only = true });
    CHECK((rig.device_features() & blk::feature::Ro));
    REQUIRE((rig.init(Wanted | blk::feature::Ro) & status::DriverOk));
    auto buf = rig.drv.alloc(512);
    CHECK(rig.guest->run(blk::request_type::Out, 0, buf, 512, true).status == blk::status_code::IoErr);
    CHECK(rig.guest->run(blk::request_type::In, 0, buf, 512, false).status == blk::status_code::Ok);
    CHECK(rig.backend.submits == 1);
}

TEST_CASE("a corrupt avail index sets DEVICE_NEEDS_RESET instead of crashing")
{
    Rig rig;
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    rig.drv.set_avail_idx(1000);
    rig.guest->notify();
    for (int i = 0; i < 500 && !(rig.regs->rd(0x70) & status::DeviceNeedsReset); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK((rig.regs->rd(0x70) & status::DeviceNeedsReset));
    rig.regs->wr(0x70, 0);
    CHECK(rig.regs->rd(0x70) == 0);
}

TEST_CASE("backpressure: a full backend leaves chains on the ring until completions make room")
{
    Rig rig;
    rig.backend.busy_at(2);
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    auto buf = rig.drv.alloc(512 * 8, 4096);
    for (unsigned i = 0; i < 8; ++i)
        rig.guest->queue(blk::request_type::In, i, buf + 512 * i, 512, false);
    rig.guest->notify();
    CHECK(rig.guest->wait_all());
    CHECK(rig.dev->metrics().read_requests == 8);
    CHECK(rig.dev->metrics().errors == 0);
    CHECK(rig.dev->metrics().backpressure > 0);
}

TEST_CASE("a discard of more ranges than the backend's queue depth is refused, and the queue keeps going")
{
    // A backend that takes two operations at a time: a three-range discard could
    // never be submitted whole. It used to count as backpressure with nothing in
    // flight, so nothing ever retried it and the queue stopped for good.
    Rig rig({ .id = "disk-0" }, 2);
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    // What the device advertises is what the backend can take at once.
    CHECK(rig.regs->rd(0x100 + 0x28) == 2); // max_discard_seg
    auto segs = rig.drv.alloc(48);
    for (std::uint64_t i = 0; i < 3; ++i) {
        (void)rig.ram.mem().write<std::uint64_t>(segs + 16 * i, 8 * i);
        (void)rig.ram.mem().write<std::uint32_t>(segs + 16 * i + 8, 8);
        (void)rig.ram.mem().write<std::uint32_t>(segs + 16 * i + 12, 0);
    }
    auto d = rig.guest->run(blk::request_type::Discard, 0, segs, 48, true);
    REQUIRE(d.completed);
    CHECK(d.status == blk::status_code::IoErr);
    auto buf = rig.drv.alloc(512);
    auto r = rig.guest->run(blk::request_type::In, 0, buf, 512, false);
    REQUIRE(r.completed);
    CHECK(r.status == blk::status_code::Ok);
}

TEST_CASE("seg_max * size_max leaves room for a read's 32-bit used length")
{
    MemBackend backend(1 << 20);
    auto dev = blk::VirtioBlk::create(backend, { .id = "big", .queue_size = 32768, .size_max = 1U << 20 }).value();
    std::uint32_t seg_max = 0;
    std::uint32_t size_max = 0;
    dev->read_config(0x0c, std::as_writable_bytes(std::span(&seg_max, 1)));
    dev->read_config(0x08, std::as_writable_bytes(std::span(&size_max, 1)));
    CHECK(size_max == 1U << 20);
    CHECK(std::uint64_t(seg_max) * size_max + 1 <= std::numeric_limits<std::uint32_t>::max());
    CHECK(seg_max > 0);
}

TEST_CASE("pause waits for in-flight requests, takes nothing new, resume continues")
{
    Rig rig;
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    rig.backend.hold(true);
    auto buf = rig.drv.alloc(512 * 4, 4096);
    rig.guest->queue(blk::request_type::In, 0, buf, 512, false);
    rig.guest->queue(blk::request_type::In, 1, buf + 512, 512, false);
    rig.guest->notify();
    for (int i = 0; i < 500 && rig.backend.held() < 2; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(rig.backend.held() == 2);

    std::atomic<bool> paused { false };
    std::thread pauser([&] {
        rig.dev->pause();
        paused = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(!paused); // two requests still in flight
    rig.backend.hold(false);
    pauser.join();
    CHECK(paused);
    CHECK(rig.drv.used_idx() == 2); // both completed and published before pause returned
    CHECK(rig.backend.in_flight() == 0);

    // While paused, new chains stay on the ring even when notified.
    rig.guest->queue(blk::request_type::In, 2, buf + 1024, 512, false);
    rig.guest->notify();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(rig.drv.used_idx() == 2);
    CHECK(rig.backend.submits == 2);
    rig.dev->resume();
    CHECK(rig.guest->wait_all());
    CHECK(rig.drv.used_idx() == 3);
}

TEST_CASE("pause before DRIVER_OK holds requests queued at activation")
{
    Rig rig;
    rig.dev->pause();
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    auto buf = rig.drv.alloc(512);
    rig.guest->queue(blk::request_type::In, 0, buf, 512, false);
    rig.guest->notify();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    CHECK(rig.drv.used_idx() == 0);
    rig.dev->resume();
    CHECK(rig.guest->wait_all());
}

TEST_CASE("reset with requests in flight waits for the backend and re-initializes cleanly")
{
    Rig rig;
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    rig.backend.hold(true);
    auto buf = rig.drv.alloc(512 * 4, 4096);
    for (unsigned i = 0; i < 3; ++i)
        rig.guest->queue(blk::request_type::In, i, buf + 512 * i, 512, false);
    rig.guest->notify();
    for (int i = 0; i < 500 && rig.backend.held() < 3; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(rig.backend.held() == 3);
    std::thread releaser([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        rig.backend.hold(false);
    });
    rig.regs->wr(0x70, 0); // blocks until the backend completed all three
    releaser.join();
    CHECK(rig.backend.in_flight() == 0);
    CHECK(rig.regs->rd(0x70) == 0);
    CHECK(rig.drv.used_idx() == 0); // a reset device does not touch the rings

    // A fresh driver instance on fresh rings works again.
    TestDriver drv2(rig.ram.mem(), 64, 0x40000, 0x200000);
    rig.drv = drv2;
    BlkGuest guest2(rig.ram, rig.drv, [&] { rig.regs->wr(0x50, 0); });
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    CHECK(guest2.run(blk::request_type::In, 0, buf, 512, false).status == blk::status_code::Ok);
}
