// virtio-console without KVM: the device driven through a fake guest (TestDriver
// rings in TestMemory) and, once, through the virtio-mmio transport. Covers both
// directions, the bounded host buffer, and hostile chains: wrong directions,
// loops, buffers outside guest memory, a corrupt ring — each refused and counted
// while the device keeps working.
#include "devices/virtio/console/chain.h"
#include "devices/virtio/console/device.h"
#include "devices/virtio/mmio.h"
#include "tests/devices/stderr_capture.h"
#include "tests/devices/virtio_blk_harness.h"

#include <doctest/doctest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>

using namespace strata;
using namespace strata::virtio;
using namespace strata::test;
namespace con = strata::virtio::console;
using namespace std::chrono_literals;

namespace {

struct FakeSignals final : VirtioSignals {
    void signal_used(std::uint16_t queue) override { ++used[queue & 1]; }
    void signal_config_change() override { }
    void set_needs_reset() override { needs_reset = true; }
    std::atomic<unsigned> used[2] { 0, 0 };
    std::atomic<bool> needs_reset { false };
};

std::span<std::byte const> bytes(std::string const& s)
{
    return std::as_bytes(std::span(s.data(), s.size()));
}

template<typename F>
bool eventually(F&& f, std::chrono::milliseconds timeout = 3000ms)
{
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!f()) {
        if (std::chrono::steady_clock::now() > until)
            return false;
        std::this_thread::sleep_for(200us);
    }
    return true;
}

// A console device activated over two test rings; `sunk` collects the guest's output.
struct Rig {
    TestMemory ram { 1 << 20 };
    TestDriver rx { ram.mem(), 16, 0x10000, 0x40000 };
    TestDriver tx { ram.mem(), 16, 0x20000, 0x80000 };
    QueueEventfds fds = QueueEventfds::create(2).value();
    FakeSignals signals;
    std::mutex lock;
    std::string sunk;
    std::unique_ptr<con::VirtioConsole> dev;
    std::uint16_t rx_posted { 0 }, tx_posted { 0 };

    explicit Rig(con::ConsoleOptions options = {})
    {
        dev = con::VirtioConsole::create(std::move(options), [this](std::span<std::byte const> b) {
            std::lock_guard g(lock);
            sunk.append(reinterpret_cast<char const*>(b.data()), b.size()); // SAFETY: bytes viewed as chars
        }).value();
        VirtioActivation a;
        a.mem = &ram.mem();
        a.features = feature::Version1 | feature::RingIndirectDesc;
        a.queues = { rx.config(), tx.config() };
        a.eventfds = &fds;
        a.signals = &signals;
        REQUIRE(dev->activate(std::move(a)));
    }
    std::string output()
    {
        std::lock_guard g(lock);
        return sunk;
    }
    // Guest transmits `text` split into descriptors of at most `piece` bytes.
    void transmit(std::string const& text, std::size_t piece = 64)
    {
        std::vector<Seg> segs;
        for (std::size_t at = 0; at < text.size(); at += piece) {
            std::string part = text.substr(at, piece);
            std::uint64_t gpa = tx.alloc(part.size());
            REQUIRE(ram.mem().write_bytes(gpa, bytes(part)));
            segs.push_back({ gpa, static_cast<std::uint32_t>(part.size()), false });
        }
        tx.publish(tx.build_chain(segs));
        ++tx_posted;
        fds.notify(con::TransmitQueue);
    }
    // Guest posts one receive buffer of `len` bytes; returns its address.
    std::uint64_t post_receive(std::uint32_t len, bool writable = true)
    {
        std::uint64_t gpa = rx.alloc(len);
        rx.publish(rx.build_chain({ { gpa, len, writable } }));
        ++rx_posted;
        fds.notify(con::ReceiveQueue);
        return gpa;
    }
    std::string read_guest(std::uint64_t gpa, std::uint32_t len)
    {
        std::string s(len, '\0');
        REQUIRE(ram.mem().read_bytes(gpa, std::as_writable_bytes(std::span(s.data(), s.size()))));
        return s;
    }
};

} // namespace

TEST_CASE("virtio-console: identity, no console features, zero config")
{
    auto dev = con::VirtioConsole::create({}, [](std::span<std::byte const>) { }).value();
    CHECK(dev->device_id() == 3);
    CHECK(dev->num_queues() == 2);
    CHECK((dev->features() & feature::Version1));
    CHECK(!(dev->features() & con::feature::Multiport));
    CHECK(!(dev->features() & con::feature::Size));
    std::uint32_t word = 0xffffffff;
    dev->read_config(4, std::as_writable_bytes(std::span(&word, 1)));
    CHECK(word == 0);
    dev->read_config(64, std::as_writable_bytes(std::span(&word, 1)));
    CHECK(word == 0);
    CHECK_FALSE(con::VirtioConsole::create({}, {}));
    con::ConsoleOptions bad;
    bad.queue_size = 3;
    CHECK_FALSE(con::VirtioConsole::create(bad, [](std::span<std::byte const>) { }));
}

TEST_CASE("virtio-console: guest output reaches the sink in order")
{
    Rig rig;
    rig.transmit("{\"id\":1,\"ok\":true}\n", 5);
    rig.transmit("second line\n");
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 2; }));
    CHECK(rig.output() == "{\"id\":1,\"ok\":true}\nsecond line\n");
    CHECK(rig.tx.used_elem(0).second == 0);
    auto m = rig.dev->metrics();
    CHECK(m.bytes_from_guest == 31);
    CHECK(m.transmit_chains == 2);
    CHECK(m.errors == 0);
    CHECK(rig.signals.used[1] >= 1);
}

TEST_CASE("virtio-console: host bytes wait for receive buffers and split across them")
{
    Rig rig;
    CHECK(rig.dev->write(bytes("ping\n")) == 5);
    CHECK(rig.dev->pending() == 5);
    auto a = rig.post_receive(3);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.rx.used_elem(0).second == 3);
    CHECK(rig.read_guest(a, 3) == "pin");
    auto b = rig.post_receive(64);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
    CHECK(rig.rx.used_elem(1).second == 2);
    CHECK(rig.read_guest(b, 2) == "g\n");
    CHECK(rig.dev->pending() == 0);

    // A buffer posted while nothing is pending stays posted until data arrives.
    auto c = rig.post_receive(64);
    std::this_thread::sleep_for(20ms);
    CHECK(rig.rx.used_idx() == 2);
    CHECK(rig.dev->write(bytes("late")) == 4);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 3; }));
    CHECK(rig.read_guest(c, 4) == "late");
    CHECK(rig.dev->metrics().bytes_to_guest == 9);
}

TEST_CASE("virtio-console: a full host buffer refuses the excess, discard_pending drops the rest")
{
    con::ConsoleOptions options;
    options.host_buffer_bytes = 8;
    Rig rig(options);
    CHECK(rig.dev->write(bytes("0123456789")) == 8);
    CHECK(rig.dev->write(bytes("x")) == 0);
    CHECK(rig.dev->metrics().refused_bytes == 3);
    CHECK(rig.dev->discard_pending() == 8);
    CHECK(rig.dev->pending() == 0);
    CHECK(rig.dev->metrics().discarded_bytes == 8);
    CHECK(rig.dev->write(bytes("ok")) == 2);
    auto a = rig.post_receive(16);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.read_guest(a, 2) == "ok");
}

TEST_CASE("virtio-console: a device-writable transmit buffer is refused, and the queue goes on")
{
    strata::test::StderrCapture log;
    Rig rig;
    std::uint64_t gpa = rig.tx.alloc(8);
    REQUIRE(rig.ram.mem().write_bytes(gpa, bytes("secret!\n")));
    // A readable descriptor followed by a writable one: the whole chain is refused.
    std::uint64_t gpa2 = rig.tx.alloc(4);
    rig.tx.publish(rig.tx.build_chain({ { gpa, 8, false }, { gpa2, 4, true } }));
    rig.fds.notify(con::TransmitQueue);
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 1; }));
    CHECK(rig.output().empty());
    CHECK(rig.tx.used_elem(0).second == 0);
    CHECK(rig.dev->metrics().errors == 1);
    REQUIRE(eventually([&] { return log.contains("transmitq chain at head 0 refused: a transmit buffer is device-writable"); }));
    rig.transmit("fine\n");
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 2; }));
    CHECK(rig.output() == "fine\n");
    CHECK_FALSE(rig.signals.needs_reset);
}

TEST_CASE("virtio-console: a read-only receive buffer is refused without consuming host bytes")
{
    strata::test::StderrCapture log;
    Rig rig;
    CHECK(rig.dev->write(bytes("data")) == 4);
    rig.post_receive(16, false);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.rx.used_elem(0).second == 0);
    CHECK(rig.dev->pending() == 4);
    CHECK(rig.dev->metrics().errors == 1);
    REQUIRE(eventually([&] { return log.contains("refused: a receive buffer is not device-writable"); }));
    auto a = rig.post_receive(16);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
    CHECK(rig.read_guest(a, 4) == "data");
}

TEST_CASE("virtio-console: loops, buffers outside RAM, huge and indirect chains")
{
    strata::test::StderrCapture log;
    Rig rig;
    // A descriptor whose NEXT points at itself: the TTL ends the walk.
    std::uint64_t gpa = rig.tx.alloc(4);
    rig.tx.set_desc(0, gpa, 4, DescFlagNext, 0);
    rig.tx.publish(0);
    rig.fds.notify(con::TransmitQueue);
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 1; }));
    // A buffer beyond guest RAM.
    rig.tx.set_desc(1, (1 << 20) - 2, 16, 0, 0);
    rig.tx.publish(1);
    // A chain that claims more than MaxChainBytes.
    rig.tx.set_desc(2, 0, static_cast<std::uint32_t>(con::MaxChainBytes + 1), 0, 0);
    rig.tx.publish(2);
    rig.fds.notify(con::TransmitQueue);
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 3; }));
    CHECK(rig.output().empty());
    CHECK(rig.dev->metrics().errors == 3);
    // Each for its own reason.
    REQUIRE(eventually([&] { return log.contains("transmitq chain at head 2 refused"); }));
    INFO(log.text());
    CHECK(log.contains("transmitq chain at head 0 refused: descriptor chain at head 0: chain longer than the queue size (loop?)"));
    CHECK(log.contains("transmitq chain at head 1 refused: a buffer lies outside guest memory"));
    CHECK(log.contains("transmitq chain at head 2 refused: the chain carries more than"));
    // An indirect chain (negotiated) is accepted.
    std::uint64_t text = rig.tx.alloc(3);
    REQUIRE(rig.ram.mem().write_bytes(text, bytes("ind")));
    // Skip past the descriptors used above.
    for (int i = 0; i < 3; ++i)
        rig.tx.build_chain({ { 0, 0, false } });
    rig.tx.publish(rig.tx.build_indirect({ { text, 3, false } }));
    rig.fds.notify(con::TransmitQueue);
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 4; }));
    CHECK(rig.output() == "ind");
    CHECK_FALSE(rig.signals.needs_reset);
}

TEST_CASE("virtio-console: a corrupt avail index stops the queue and asks for a reset")
{
    strata::test::StderrCapture log;
    Rig rig;
    rig.tx.set_avail_idx(100); // claims 100 new entries in a 16-entry ring
    rig.fds.notify(con::TransmitQueue);
    REQUIRE(eventually([&] { return rig.signals.needs_reset.load(); }));
    CHECK(rig.dev->metrics().errors >= 1);
    CHECK(eventually([&] { return log.contains("stopped: virtqueue: avail->idx 100 is more than the queue size (16) ahead of 0"); }));
    // The other direction still works, and reset() returns.
    CHECK(rig.dev->write(bytes("still")) == 5);
    auto a = rig.post_receive(8);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.read_guest(a, 5) == "still");
    rig.dev->reset();
    CHECK_FALSE(rig.dev->active());
}

TEST_CASE("virtio-console: host bytes survive a reset and reach the next activation")
{
    Rig rig;
    rig.dev->reset();
    CHECK(rig.dev->write(bytes("after")) == 5);
    TestDriver rx2 { rig.ram.mem(), 8, 0x30000, 0xc0000 };
    VirtioActivation a;
    a.mem = &rig.ram.mem();
    a.features = feature::Version1;
    a.queues = { rx2.config(), QueueConfig {} };
    a.eventfds = &rig.fds;
    a.signals = &rig.signals;
    REQUIRE(rig.dev->activate(std::move(a)));
    std::uint64_t gpa = rx2.alloc(8);
    rx2.publish(rx2.build_chain({ { gpa, 8, true } }));
    rig.fds.notify(con::ReceiveQueue);
    REQUIRE(eventually([&] { return rx2.used_idx() == 1; }));
    CHECK(rig.read_guest(gpa, 5) == "after");
}

TEST_CASE("virtio-console over virtio-mmio: device id 3, two queues")
{
    TestMemory ram(1 << 20);
    CountingLine irq;
    auto dev = con::VirtioConsole::create({}, [](std::span<std::byte const>) { }).value();
    auto t = MmioTransport::create(*dev, ram.mem(), irq, 0xd0001000, 6).value();
    auto rd = [&](std::uint64_t off) {
        std::uint32_t v = 0;
        t->read(off, std::as_writable_bytes(std::span(&v, 1)));
        return v;
    };
    auto wr = [&](std::uint64_t off, std::uint32_t v) { t->write(off, std::as_bytes(std::span(&v, 1))); };
    CHECK(rd(0x008) == 3);
    for (std::uint32_t q = 0; q < 3; ++q) {
        wr(0x030, q);
        CHECK(rd(0x034) == (q < 2 ? 256u : 0u));
    }
    CHECK(t->notifiers().size() == 2);
}
