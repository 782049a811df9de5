// virtio-net without KVM: the device driven through a fake guest (TestDriver
// rings in TestMemory) over a socket-pair backend whose far end plays the tap.
// Covers both directions, mergeable and single receive buffers, the offloads
// given to the backend, backpressure from the backend, the per-turn budget, and
// hostile chains (wrong directions, tiny buffers, offloads never negotiated,
// loops, buffers outside RAM, a corrupt ring) — each refused and counted while
// the device keeps working.
#include "base/rate_limiter.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net/chain.h"
#include "devices/virtio/net/device.h"
#include "devices/virtio/net/mmds_store.h"
#include "devices/virtio/net/tap.h"
#include "tests/devices/stderr_capture.h"
#include "tests/devices/virtio_blk_harness.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <string>
#include <sys/socket.h>
#include <thread>

using namespace strata;
using namespace strata::virtio;
using namespace strata::test;
namespace vnet = strata::virtio::net;
using namespace std::chrono_literals;

namespace {

struct FakeSignals final : VirtioSignals {
    void signal_used(std::uint16_t queue) override { ++used[queue & 1]; }
    void signal_config_change() override { ++config_changes; }
    void set_needs_reset() override { needs_reset = true; }
    std::atomic<unsigned> used[2] { 0, 0 };
    std::atomic<unsigned> config_changes { 0 };
    std::atomic<bool> needs_reset { false };
};

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

// A NetBackend over one end of a SOCK_SEQPACKET socket pair (packet boundaries
// kept, non-blocking); the test holds the other end, as the host side of a tap.
class PairBackend final : public vnet::NetBackend {
public:
    PairBackend()
    {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        m_mine = Fd(sv[0]);
        peer = Fd(sv[1]);
    }
    int fd() const override { return m_mine.get(); }
    Result<std::size_t> receive(std::span<std::byte> buf) override
    {
        ssize_t n = ::recv(m_mine.get(), buf.data(), buf.size(), 0);
        if (n < 0 && errno == EAGAIN)
            return std::size_t { 0 };
        if (n < 0)
            return errno_error("recv");
        return static_cast<std::size_t>(n);
    }
    // As a tap does on a kernel that reports a cut packet's whole length.
    Result<std::size_t> receive_into(std::span<iovec const> pieces) override
    {
        ++direct_reads;
        msghdr msg {};
        msg.msg_iov = const_cast<iovec*>(pieces.data()); // SAFETY: recvmsg writes through the pointers, not the array
        msg.msg_iovlen = pieces.size();
        ssize_t n = ::recvmsg(m_mine.get(), &msg, MSG_TRUNC);
        if (n < 0 && errno == EAGAIN)
            return std::size_t { 0 };
        if (n < 0)
            return errno_error("recvmsg");
        return static_cast<std::size_t>(n);
    }
    Result<bool> send(std::span<iovec const> packet) override
    {
        if (refuse_sends)
            return make_error(ErrorKind::Io, "write to tap: Input/output error");
        msghdr msg {};
        msg.msg_iov = const_cast<iovec*>(packet.data()); // SAFETY: sendmsg only reads
        msg.msg_iovlen = packet.size();
        ssize_t n = ::sendmsg(m_mine.get(), &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN)
            return false;
        if (n < 0)
            return errno_error("sendmsg");
        return true;
    }
    Status set_offloads(vnet::Offloads o) override
    {
        std::lock_guard g(lock);
        offloads.push_back(o);
        return ok();
    }
    std::vector<vnet::Offloads> offload_calls()
    {
        std::lock_guard g(lock);
        return offloads;
    }
    // The host side: the next packet the guest sent, or "" after `wait`.
    std::string take(std::chrono::milliseconds wait = 3000ms)
    {
        std::string out(70000, '\0');
        ssize_t n = -1;
        eventually([&] {
            n = ::recv(peer.get(), out.data(), out.size(), 0);
            return n >= 0;
        }, wait);
        out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
        return out;
    }
    bool inject(std::string const& packet) { return ::send(peer.get(), packet.data(), packet.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(packet.size()); }

    Fd peer;
    std::atomic<bool> refuse_sends { false };
    std::atomic<unsigned> direct_reads { 0 };

private:
    Fd m_mine;
    std::mutex lock;
    std::vector<vnet::Offloads> offloads;
};

std::string header(std::uint8_t flags = 0, std::uint8_t gso = 0, std::uint16_t gso_size = 0)
{
    vnet::NetHeader h {};
    h.flags = flags;
    h.gso_type = gso;
    h.gso_size = gso_size;
    return std::string(reinterpret_cast<char const*>(&h), sizeof h); // SAFETY: bytes of a POD
}

// An Ethernet frame of `len` bytes whose payload is a recognisable pattern.
std::string frame(std::size_t len, char seed = 'a')
{
    std::string f(len, '\0');
    std::memset(f.data(), 0xff, 6);  // broadcast destination
    std::memcpy(f.data() + 6, "\x02\x00\x00\x00\x00\x01", 6);
    f[12] = 0x08;
    f[13] = 0x00;
    for (std::size_t i = 14; i < len; ++i)
        f[i] = static_cast<char>(seed + static_cast<char>(i % 23));
    return f;
}

std::uint64_t const AllFeatures = feature::Version1 | feature::RingIndirectDesc | vnet::feature::Mac | vnet::feature::Status
    | vnet::feature::MrgRxbuf | vnet::feature::Csum | vnet::feature::GuestCsum | vnet::feature::HostTso4 | vnet::feature::HostTso6
    | vnet::feature::GuestTso4 | vnet::feature::GuestTso6;

struct Rig {
    TestMemory ram { 4 << 20 };
    TestDriver rx { ram.mem(), 16, 0x10000, 0x100000 };
    TestDriver tx { ram.mem(), 16, 0x20000, 0x200000 };
    QueueEventfds fds = QueueEventfds::create(2).value();
    FakeSignals signals;
    PairBackend backend;
    std::unique_ptr<vnet::VirtioNet> dev;

    explicit Rig(std::uint64_t features = AllFeatures, vnet::NetOptions options = {})
    {
        options.mac = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
        dev = vnet::VirtioNet::create(backend, std::move(options)).value();
        activate(features);
    }
    // What a transport does when the driver sets DRIVER_OK (again after a reset).
    void activate(std::uint64_t features = AllFeatures)
    {
        VirtioActivation a;
        a.mem = &ram.mem();
        a.features = features;
        a.queues = { rx.config(), tx.config() };
        a.eventfds = &fds;
        a.signals = &signals;
        REQUIRE(dev->activate(std::move(a)));
    }
    // Guest transmits `packet` (header included) split into pieces of at most `piece` bytes.
    void transmit(std::string const& packet, std::size_t piece = 1 << 20)
    {
        std::vector<Seg> segs;
        for (std::size_t at = 0; at < packet.size(); at += piece) {
            std::string part = packet.substr(at, piece);
            std::uint64_t gpa = tx.alloc(part.size());
            REQUIRE(ram.mem().write_bytes(gpa, std::as_bytes(std::span(part.data(), part.size()))));
            segs.push_back({ gpa, static_cast<std::uint32_t>(part.size()), false });
        }
        tx.publish(tx.build_chain(segs));
        fds.notify(vnet::TransmitQueue);
    }
    std::uint64_t post_receive(std::uint32_t len, bool writable = true)
    {
        std::uint64_t gpa = rx.alloc(len);
        rx.publish(rx.build_chain({ { gpa, len, writable } }));
        fds.notify(vnet::ReceiveQueue);
        return gpa;
    }
    std::string read_guest(std::uint64_t gpa, std::uint32_t len)
    {
        std::string s(len, '\0');
        REQUIRE(ram.mem().read_bytes(gpa, std::as_writable_bytes(std::span(s.data(), s.size()))));
        return s;
    }
    vnet::NetHeader guest_header(std::uint64_t gpa)
    {
        return ram.mem().read<vnet::NetHeader>(gpa).value();
    }
};

} // namespace

TEST_CASE("virtio-net: identity, offered features, MAC and link in the config space")
{
    PairBackend backend;
    vnet::NetOptions options;
    options.mac = vnet::parse_mac("52:54:00:ab:cd:ef").value();
    auto dev = vnet::VirtioNet::create(backend, options).value();
    CHECK(dev->device_id() == 1);
    CHECK(dev->num_queues() == 2);
    std::uint64_t const f = dev->features();
    for (std::uint64_t bit : { feature::Version1, vnet::feature::Mac, vnet::feature::Status, vnet::feature::MrgRxbuf,
             vnet::feature::Csum, vnet::feature::GuestCsum, vnet::feature::HostTso4, vnet::feature::GuestTso4 })
        CHECK((f & bit) != 0);
    CHECK(!(f & vnet::feature::CtrlVq));
    CHECK(!(f & vnet::feature::Mq));
    std::uint8_t cfg[12] {};
    dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(std::memcmp(cfg, "\x52\x54\x00\xab\xcd\xef", 6) == 0);
    CHECK(cfg[6] == 1); // VIRTIO_NET_S_LINK_UP
    // Writes are ignored (a 1.x driver must not write the MAC).
    std::uint8_t junk[6] { 1, 2, 3, 4, 5, 6 };
    dev->write_config(0, std::as_bytes(std::span(junk)));
    dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(cfg[0] == 0x52);

    vnet::NetOptions bad;
    bad.mac = { 0x01, 0, 0, 0, 0, 1 };
    CHECK_FALSE(vnet::VirtioNet::create(backend, bad));
    bad.mac = {};
    bad.queue_size = 100;
    CHECK_FALSE(vnet::VirtioNet::create(backend, bad));
}

TEST_CASE("virtio-net: MAC parsing and formatting")
{
    CHECK(vnet::format_mac(vnet::parse_mac("02:AB:cd:00:11:ff").value()) == "02:ab:cd:00:11:ff");
    for (char const* bad : { "", "02:ab:cd:00:11", "02:ab:cd:00:11:ff:00", "02-ab-cd-00-11-ff", "0g:ab:cd:00:11:ff", "01:00:5e:00:00:01", "2:ab:cd:00:11:ff:" })
        CHECK_FALSE(vnet::parse_mac(bad));
    auto m = vnet::random_mac();
    CHECK((m[0] & 1) == 0);
    CHECK((m[0] & 2) == 2);
}

TEST_CASE("virtio-net: transmitted packets reach the backend whole, header first")
{
    Rig rig;
    std::string const p1 = header() + frame(60);
    std::string const p2 = header(vnet::hdr::NeedsCsum) + frame(1514, 'k');
    rig.transmit(p1);
    rig.transmit(p2, 200); // header and frame split over 8 descriptors
    CHECK(rig.backend.take() == p1);
    CHECK(rig.backend.take() == p2);
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 2; }));
    CHECK(rig.tx.used_elem(1).second == 0);
    auto m = rig.dev->metrics();
    CHECK(m.tx_packets == 2);
    CHECK(m.tx_bytes == 60 + 1514);
    CHECK(m.errors == 0);
    CHECK(rig.signals.used[1] >= 1);
}

TEST_CASE("virtio-net: with MRG_RXBUF a packet spans several receive buffers and num_buffers says how many")
{
    Rig rig;
    auto a = rig.post_receive(1526);
    auto b = rig.post_receive(1526);
    auto c = rig.post_receive(1526);
    std::string const f = frame(2500);
    REQUIRE(rig.backend.inject(header() + f));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
    CHECK(rig.rx.used_elem(0).second == 1526);
    CHECK(rig.rx.used_elem(1).second == 12 + 2500 - 1526);
    CHECK(rig.guest_header(a).num_buffers == 2);
    CHECK(rig.read_guest(a + 12, 1514) + rig.read_guest(b, 2500 - 1514) == f);
    // The third buffer takes the next packet.
    REQUIRE(rig.backend.inject(header() + frame(100, 'x')));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 3; }));
    CHECK(rig.guest_header(c).num_buffers == 1);
    CHECK(rig.read_guest(c + 12, 100) == frame(100, 'x'));
    auto m = rig.dev->metrics();
    CHECK(m.rx_packets == 2);
    CHECK(m.rx_bytes == 2600);
    CHECK(rig.signals.used[0] >= 1);
}

TEST_CASE("virtio-net: a packet delivered into a buffer taken before dirty tracking started marks that buffer's page")
{
    // The device takes a buffer for a packet that needs two, and waits for the
    // second. A capture that takes the dirty log meanwhile (here: tracking that
    // starts with every bit clear) must still find the first buffer's page
    // dirty once the packet is delivered, or a differential memory layer keeps
    // the used ring's entry without the bytes it points at.
    Rig rig;
    auto a = rig.post_receive(4096);
    std::string const f = frame(5000);
    REQUIRE(rig.backend.inject(header() + f));
    std::this_thread::sleep_for(300ms); // the device takes `a` and finds the ring dry
    std::vector<std::atomic<std::uint64_t>> bits((4 << 20) / 4096 / 64);
    rig.ram.track_dirty(bits.data());
    auto b = rig.post_receive(4096);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
    CHECK(rig.read_guest(a + 12, 4096 - 12) + rig.read_guest(b, 5000 - (4096 - 12)) == f);
    auto dirty = [&](std::uint64_t gpa) { return ((bits[gpa / 4096 / 64].load() >> (gpa / 4096 % 64)) & 1) != 0; };
    CHECK(dirty(a));
    CHECK(dirty(b));
}

// Room for the largest packet (header and a 64 KiB GSO frame) in 16 buffers.
constexpr std::uint32_t DirectBuffer = 4108;

TEST_CASE("virtio-net: with room for the largest packet posted, packets are read straight into the guest's buffers")
{
    // Twice the room, so that what is left after each packet still holds the largest.
    Rig rig;
    std::vector<std::uint64_t> bufs;
    for (int i = 0; i < 16; ++i)
        bufs.push_back(rig.post_receive(2 * DirectBuffer));
    std::this_thread::sleep_for(20ms); // the device has taken all 16 chains
    std::string const small = frame(1000, 's');
    REQUIRE(rig.backend.inject(header(vnet::hdr::DataValid) + small));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.rx.used_elem(0).second == 12 + 1000);
    CHECK(rig.guest_header(bufs[0]).num_buffers == 1);
    CHECK(rig.guest_header(bufs[0]).flags == vnet::hdr::DataValid); // the backend's header, passed on
    CHECK(rig.read_guest(bufs[0] + 12, 1000) == small);
    // A GSO-sized packet spans the next buffers; num_buffers is written over
    // whatever the backend left in the header's last field.
    vnet::NetHeader h {};
    h.gso_type = vnet::hdr::GsoTcpv4;
    h.gso_size = 1448;
    h.num_buffers = 0xabcd;
    std::string const big = frame(20000, 'g');
    REQUIRE(rig.backend.inject(std::string(reinterpret_cast<char const*>(&h), sizeof h) + big)); // SAFETY: bytes of a POD
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1 + 3; }));
    vnet::NetHeader const got = rig.guest_header(bufs[1]);
    CHECK(got.num_buffers == 3);
    CHECK(got.gso_type == vnet::hdr::GsoTcpv4);
    CHECK(got.gso_size == 1448);
    std::string joined = rig.read_guest(bufs[1] + 12, 2 * DirectBuffer - 12);
    for (int i = 2; i <= 3; ++i)
        joined += rig.read_guest(bufs[static_cast<std::size_t>(i)], 2 * DirectBuffer);
    CHECK(joined.substr(0, big.size()) == big);
    for (std::uint16_t i = 1; i < 3; ++i)
        CHECK(rig.rx.used_elem(i).second == 2 * DirectBuffer);
    CHECK(rig.rx.used_elem(3).second == 12 + 20000 - 4 * DirectBuffer);
    auto m = rig.dev->metrics();
    CHECK(m.rx_packets == 2);
    CHECK(m.rx_direct == 2);
    CHECK(m.rx_bytes == 21000);
    CHECK(rig.backend.direct_reads >= 2);
}

TEST_CASE("virtio-net: a packet read in place that is too short or was cut is dropped, the guest's buffers kept for the next")
{
    StderrCapture log;
    Rig rig;
    std::vector<std::uint64_t> bufs;
    for (int i = 0; i < 16; ++i)
        bufs.push_back(rig.post_receive(DirectBuffer));
    std::this_thread::sleep_for(20ms);
    // Shorter than a header and an Ethernet header; longer than every buffer
    // posted (the backend reports the whole length of what it cut).
    REQUIRE(rig.backend.inject(header() + "tiny"));
    REQUIRE(rig.backend.inject(header() + frame(16 * DirectBuffer + 100, 'c')));
    std::string const good = frame(300, 'k');
    REQUIRE(rig.backend.inject(header() + good));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    std::this_thread::sleep_for(20ms);
    CHECK(rig.rx.used_idx() == 1);
    CHECK(rig.rx.used_elem(0).second == 12 + 300);
    CHECK(rig.read_guest(bufs[0] + 12, 300) == good);
    CHECK(rig.guest_header(bufs[0]).num_buffers == 1);
    auto m = rig.dev->metrics();
    CHECK(m.rx_dropped == 2);
    CHECK(m.rx_packets == 1);
    CHECK(m.rx_direct == 1);
    CHECK(m.errors == 0);
}

TEST_CASE("virtio-net: looking for room to read in place does not ask a guest with fewer buffers posted to notify each one")
{
    // With EVENT_IDX the device asks for a notification (avail_event) only when
    // a packet waits for buffers; taking every posted chain while looking for
    // 64 KiB of room must not, or a guest that keeps less than that posted (the
    // netecho firmware keeps 32 KiB) would exit to notify each buffer it posts.
    Rig rig(AllFeatures | feature::RingEventIdx);
    auto a = rig.post_receive(1526);
    for (int i = 0; i < 3; ++i)
        rig.post_receive(1526);
    std::this_thread::sleep_for(20ms);
    REQUIRE(rig.backend.inject(header() + frame(100, 'n')));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.read_guest(a + 12, 100) == frame(100, 'n'));
    CHECK(rig.rx.avail_event() == 0);
    CHECK(rig.dev->metrics().rx_direct == 0);
}

TEST_CASE("virtio-net: without MRG_RXBUF only a single buffer that holds the largest packet is read into in place")
{
    Rig rig(feature::Version1 | vnet::feature::Mac);
    auto a = rig.post_receive(2048);
    std::string const first = frame(700, 'f');
    REQUIRE(rig.backend.inject(header() + first));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.read_guest(a + 12, 700) == first);
    CHECK(rig.dev->metrics().rx_direct == 0); // too small: through the device's buffer
    auto b = rig.post_receive(16 * DirectBuffer);
    std::this_thread::sleep_for(20ms);
    std::string const second = frame(30000, 'h');
    REQUIRE(rig.backend.inject(header() + second));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
    CHECK(rig.rx.used_elem(1).second == 12 + 30000);
    CHECK(rig.guest_header(b).num_buffers == 1);
    CHECK(rig.read_guest(b + 12, 30000) == second);
    auto m = rig.dev->metrics();
    CHECK(m.rx_packets == 2);
    CHECK(m.rx_direct == 1);
}

TEST_CASE("virtio-net: the rx limiter holds a packet read in place unpublished until its bucket refills")
{
    // One packet per second: the second waits in the guest's buffer, unpublished.
    RateLimiter limiter(RateLimiterConfig { {}, TokenBucketConfig { 1, 0, 1000 } });
    vnet::NetOptions options;
    options.rx_limiter = &limiter;
    Rig rig(AllFeatures, options);
    std::vector<std::uint64_t> bufs;
    for (int i = 0; i < 16; ++i)
        bufs.push_back(rig.post_receive(2 * DirectBuffer));
    std::this_thread::sleep_for(20ms);
    REQUIRE(rig.backend.inject(header() + frame(100)));
    REQUIRE(rig.backend.inject(header() + frame(100, 'b')));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    std::this_thread::sleep_for(100ms);
    CHECK(rig.rx.used_idx() == 1);
    CHECK(rig.dev->metrics().rx_throttled >= 1);
    limiter.update(RateLimiterConfig {});
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }, 2000ms));
    CHECK(rig.read_guest(bufs[1] + 12, 100) == frame(100, 'b'));
    CHECK(rig.guest_header(bufs[1]).num_buffers == 1);
    CHECK(rig.dev->metrics().rx_direct == 2);
}

TEST_CASE("virtio-net: packets wait in the backend until the guest posts buffers")
{
    Rig rig;
    REQUIRE(rig.backend.inject(header() + frame(200, 'p')));
    REQUIRE(rig.backend.inject(header() + frame(300, 'q')));
    std::this_thread::sleep_for(30ms);
    CHECK(rig.rx.used_idx() == 0);
    CHECK(rig.dev->metrics().rx_dropped == 0);
    // A packet needing two buffers waits for the second, holding the first.
    auto a = rig.post_receive(100);
    std::this_thread::sleep_for(30ms);
    CHECK(rig.rx.used_idx() == 0);
    auto b = rig.post_receive(4096);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
    CHECK(rig.read_guest(a + 12, 88) + rig.read_guest(b, 112) == frame(200, 'p'));
    auto c = rig.post_receive(4096);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 3; }));
    CHECK(rig.read_guest(c + 12, 300) == frame(300, 'q'));
}

TEST_CASE("virtio-net: without MRG_RXBUF a packet too large for its buffer is dropped and counted, the buffer kept")
{
    StderrCapture log;
    Rig rig(feature::Version1 | vnet::feature::Mac);
    auto a = rig.post_receive(600);
    REQUIRE(rig.backend.inject(header() + frame(1000)));
    REQUIRE(rig.backend.inject(header() + frame(500, 'z')));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.rx.used_elem(0).second == 512);
    CHECK(rig.guest_header(a).num_buffers == 1);
    CHECK(rig.read_guest(a + 12, 500) == frame(500, 'z'));
    auto m = rig.dev->metrics();
    CHECK(m.rx_dropped == 1);
    CHECK(m.rx_packets == 1);
    CHECK(log.eventually_contains("does not fit"));
}

TEST_CASE("virtio-net: the offloads the guest accepted are set on the backend, and withdrawn on reset")
{
    Rig rig(feature::Version1 | vnet::feature::GuestCsum | vnet::feature::GuestTso4);
    rig.dev->reset();
    auto calls = rig.backend.offload_calls();
    REQUIRE(calls.size() == 2);
    CHECK(calls[0] == vnet::Offloads { true, true, false });
    CHECK(calls[1] == vnet::Offloads {});

    Rig plain(feature::Version1 | vnet::feature::GuestTso4); // TSO without checksum offload means nothing
    REQUIRE(eventually([&] { return !plain.backend.offload_calls().empty(); }));
    CHECK(plain.backend.offload_calls().at(0) == vnet::Offloads {});
}

TEST_CASE("virtio-net: while it polls, the device takes transmits without notifications, and asks for them again before it sleeps")
{
    vnet::NetOptions options;
    options.poll_us = 1'000'000; // a long window, so the test's steps fall inside it
    Rig rig(AllFeatures | feature::RingEventIdx, options);
    rig.transmit(header() + frame(80, '1'));
    CHECK(rig.backend.take() == header() + frame(80, '1'));
    // The first chain's turn ends by asking for the next notification
    // (avail_event 1) and then the window opens. A chain published before that
    // turn has ended is taken in it, with notifications on, which moves
    // avail_event to 2: the case failed that way now and then on a loaded host.
    // So the next chain waits for the turn's end, and 100 ms more, well inside
    // the window.
    REQUIRE(eventually([&] { return rig.tx.avail_event() == 1; }, 3000ms));
    std::this_thread::sleep_for(100ms);
    // Within the window a chain published without a notification still goes,
    // and avail_event stays behind (the guest is not asked to notify).
    std::string const quiet = header() + frame(90, '2');
    std::uint64_t gpa = rig.tx.alloc(quiet.size());
    REQUIRE(rig.ram.mem().write_bytes(gpa, std::as_bytes(std::span(quiet.data(), quiet.size()))));
    rig.tx.publish(rig.tx.build_chain({ { gpa, static_cast<std::uint32_t>(quiet.size()), false } }));
    CHECK(rig.backend.take(500ms) == quiet);
    CHECK(rig.tx.avail_event() != 2);
    // Once the window closes the device asks to be notified of the next chain.
    REQUIRE(eventually([&] { return rig.tx.avail_event() == 2; }, 3000ms));
    rig.transmit(header() + frame(70, '3'));
    CHECK(rig.backend.take() == header() + frame(70, '3'));
    CHECK(rig.dev->metrics().tx_packets == 3);
}

TEST_CASE("virtio-net: hostile transmit chains are refused and counted, good packets still go")
{
    StderrCapture log;
    Rig rig(feature::Version1 | vnet::feature::Csum); // no HOST_TSO
    // A device-writable buffer in a transmit chain.
    std::uint64_t gpa = rig.tx.alloc(200);
    rig.tx.publish(rig.tx.build_chain({ { gpa, 100, false }, { gpa + 100, 100, true } }));
    // Segmentation the guest never negotiated.
    rig.transmit(header(vnet::hdr::NeedsCsum, vnet::hdr::GsoTcpv4, 1448) + frame(3000));
    // Shorter than a header, and a header with no frame.
    rig.transmit(std::string(8, '\0'));
    rig.transmit(header());
    // Outside guest memory.
    rig.tx.publish(rig.tx.build_chain({ { 0x7fff0000, 100, false } }));
    // Too large: more than a 64 KiB packet.
    std::uint64_t big = rig.tx.alloc(70000);
    rig.tx.publish(rig.tx.build_chain({ { big, 70000, false } }));
    std::string const good = header(vnet::hdr::NeedsCsum) + frame(64);
    rig.transmit(good);
    CHECK(rig.backend.take() == good);
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 7; }));
    auto m = rig.dev->metrics();
    CHECK(m.errors == 6);
    CHECK(m.tx_packets == 1);
    CHECK(!rig.signals.needs_reset);
    CHECK(log.eventually_contains("device-writable"));
    CHECK(log.eventually_contains("HOST_TSO4"));
    CHECK(log.eventually_contains("no room for the 12-byte"));
    CHECK(log.eventually_contains("outside guest memory"));
    // Nothing refused reached the backend.
    CHECK(rig.backend.take(50ms).empty());
}

TEST_CASE("virtio-net: hostile receive chains are refused and returned empty, the packet goes to the next good buffer")
{
    StderrCapture log;
    Rig rig;
    rig.post_receive(1526, false); // device-readable
    rig.post_receive(8);           // no room for the header
    // A descriptor loop.
    std::uint16_t const loop = rig.rx.build_chain({ { 0, 0, true } });
    rig.rx.set_desc(loop, rig.rx.alloc(64), 64, DescFlagWrite | DescFlagNext, loop);
    rig.rx.publish(loop);
    auto good = rig.post_receive(1526);
    REQUIRE(rig.backend.inject(header() + frame(700)));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 4; }));
    for (std::uint16_t i = 0; i < 3; ++i)
        CHECK(rig.rx.used_elem(i).second == 0);
    CHECK(rig.rx.used_elem(3).second == 712);
    CHECK(rig.read_guest(good + 12, 700) == frame(700));
    auto m = rig.dev->metrics();
    CHECK(m.errors == 3);
    CHECK(m.rx_packets == 1);
    CHECK(log.eventually_contains("not device-writable"));
    CHECK(log.eventually_contains("loop"));
}

TEST_CASE("virtio-net: a corrupt ring stops its queue and asks for a reset, the device resets cleanly")
{
    StderrCapture log;
    Rig rig;
    rig.tx.set_avail_idx(100); // 100 entries on a 16-entry ring
    rig.fds.notify(vnet::TransmitQueue);
    REQUIRE(eventually([&] { return rig.signals.needs_reset.load(); }));
    CHECK(rig.dev->metrics().errors >= 1);
    // Receive still works until the driver resets.
    auto a = rig.post_receive(1526);
    REQUIRE(rig.backend.inject(header() + frame(80)));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.read_guest(a + 12, 80) == frame(80));
    rig.dev->reset();
    CHECK(!rig.dev->active());
}

TEST_CASE("virtio-net: a backend that cannot take packets holds them on the ring, receive keeps flowing meanwhile")
{
    vnet::NetOptions options;
    options.budget = 4;
    Rig rig(AllFeatures, options);
    // Fill the socket pair until the device's sends would block.
    int const small = 4096;
    REQUIRE(::setsockopt(rig.backend.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    std::string const p = header() + frame(1500);
    for (int i = 0; i < 16; ++i)
        rig.transmit(p);
    REQUIRE(eventually([&] { return rig.dev->metrics().tx_backpressure >= 1; }));
    std::uint16_t const stuck = rig.tx.used_idx();
    CHECK(stuck < 16);
    // Receive is not starved by the blocked transmit side.
    auto a = rig.post_receive(1526);
    REQUIRE(rig.backend.inject(header() + frame(90)));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.read_guest(a + 12, 90) == frame(90));
    // Draining the host side lets every packet through, in order, none lost.
    int got = 0;
    while (got < 16) {
        std::string out = rig.backend.take();
        REQUIRE(out == p);
        ++got;
    }
    REQUIRE(eventually([&] { return rig.tx.used_idx() == 16; }));
    CHECK(rig.dev->metrics().tx_packets == 16);
    CHECK(rig.dev->metrics().tx_dropped == 0);
}

TEST_CASE("virtio-net: a flood of transmit chains is processed in bounded turns and reset still stops it")
{
    vnet::NetOptions options;
    options.budget = 2;
    Rig rig(AllFeatures, options);
    rig.backend.refuse_sends = true; // every packet fails: the cheapest flood
    std::string const p = header() + frame(60);
    for (int round = 0; round < 8; ++round) {
        for (int i = 0; i < 16; ++i)
            rig.transmit(p);
        REQUIRE(eventually([&] { return rig.tx.used_idx() == 16 * (round + 1); }));
    }
    CHECK(rig.dev->metrics().tx_dropped == 128);
    for (int i = 0; i < 16; ++i)
        rig.transmit(p);
    auto started = std::chrono::steady_clock::now();
    rig.dev->reset();
    CHECK(std::chrono::steady_clock::now() - started < 2s);
    CHECK(!rig.dev->active());
}

TEST_CASE("virtio-net: the device over the virtio-mmio transport: features, MAC through the config window")
{
    PairBackend backend;
    vnet::NetOptions options;
    options.mac = vnet::parse_mac("02:00:00:00:00:07").value();
    auto dev = vnet::VirtioNet::create(backend, options).value();
    TestMemory ram { 1 << 20 };
    CountingLine line;
    auto t = MmioTransport::create(*dev, ram.mem(), line, 0xd0000000, 5).value();
    std::uint32_t v = 0;
    auto rd = [&](std::uint64_t off) {
        t->read(off, std::as_writable_bytes(std::span(&v, 1)));
        return v;
    };
    CHECK(rd(0x008) == 1);
    std::uint8_t mac[6];
    t->read(0x100, std::as_writable_bytes(std::span(mac)));
    CHECK(mac[5] == 7);
}

TEST_CASE("virtio-net: opening a tap that does not exist or is no tap is a clear error")
{
    auto missing = vnet::Tap::open("strata-nonesuch");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().kind == ErrorKind::NotFound);
    CHECK(missing.error().message.find("does not exist") != std::string::npos);
    auto bad = vnet::Tap::open("a/b");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == ErrorKind::Usage);
    CHECK_FALSE(vnet::Tap::open("0123456789abcdef"));
    auto lo = vnet::Tap::open("lo");
    REQUIRE_FALSE(lo);
    CHECK((lo.error().kind == ErrorKind::BadInput || lo.error().kind == ErrorKind::Permission
        || lo.error().kind == ErrorKind::Unavailable));
}

TEST_CASE("virtio-net: the tx limiter holds packets on the ring until its bucket refills, none lost")
{
    // 10000 bytes per 100 ms; the bucket starts full.
    RateLimiter limiter(RateLimiterConfig { TokenBucketConfig { 10000, 0, 100 }, {} });
    vnet::NetOptions options;
    options.tx_limiter = &limiter;
    Rig rig(AllFeatures, options);
    std::string const p = header() + frame(1000);
    auto const started = std::chrono::steady_clock::now();
    for (int i = 0; i < 15; ++i)
        rig.transmit(p);
    for (int i = 0; i < 15; ++i)
        REQUIRE(rig.backend.take() == p);
    auto const elapsed = std::chrono::steady_clock::now() - started;
    // 15000 bytes: 10000 at once, 5000 more need 50 ms of refill.
    CHECK(elapsed >= 40ms);
    auto m = rig.dev->metrics();
    CHECK(m.tx_packets == 15);
    CHECK(m.tx_throttled >= 1);
    CHECK(m.tx_dropped == 0);
}

TEST_CASE("virtio-net: the rx limiter holds packets back, and an update to unlimited lets them through")
{
    // One packet per second: the second waits.
    RateLimiter limiter(RateLimiterConfig { {}, TokenBucketConfig { 1, 0, 1000 } });
    vnet::NetOptions options;
    options.rx_limiter = &limiter;
    Rig rig(AllFeatures, options);
    rig.post_receive(1526);
    rig.post_receive(1526);
    REQUIRE(rig.backend.inject(header() + frame(100)));
    REQUIRE(rig.backend.inject(header() + frame(100, 'b')));
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    std::this_thread::sleep_for(100ms);
    CHECK(rig.rx.used_idx() == 1);
    CHECK(rig.dev->metrics().rx_throttled >= 1);
    // PATCH /network-interfaces does this: the new buckets apply from the next try.
    limiter.update(RateLimiterConfig {});
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }, 2000ms));
    CHECK(rig.dev->metrics().rx_packets == 2);
}

TEST_CASE("virtio-net: frames for the metadata service are answered by the device and never reach the backend")
{
    auto store = vnet::MmdsStore::create();
    REQUIRE(store->put(R"({"id":"i-42"})"));
    vnet::NetOptions options;
    options.mmds = store;
    Rig rig(AllFeatures, options);
    // An ARP request from the guest for 169.254.169.254.
    std::string arp(42, '\0');
    std::memset(arp.data(), 0xff, 6);
    std::memcpy(arp.data() + 6, "\x02\x11\x22\x33\x44\x55", 6);
    std::memcpy(arp.data() + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
    std::memcpy(arp.data() + 22, "\x02\x11\x22\x33\x44\x55\x0a\x00\x00\x02", 10);
    std::memcpy(arp.data() + 38, "\xa9\xfe\xa9\xfe", 4);
    auto buffer = rig.post_receive(2048);
    rig.transmit(header() + arp);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1; }));
    CHECK(rig.rx.used_elem(0).second == 12 + 60);
    std::string const reply = rig.read_guest(buffer + 12, 60);
    CHECK(reply.substr(0, 6) == std::string("\x02\x11\x22\x33\x44\x55", 6));
    CHECK(reply.substr(20, 2) == std::string("\x00\x02", 2)); // an ARP reply
    CHECK(reply.substr(22, 6) == std::string("\x06\x01\x23\x45\x67\x01", 6));
    CHECK(reply.substr(28, 4) == "\xa9\xfe\xa9\xfe");
    // Nothing went to the backend; other traffic still does.
    std::string const other = header() + frame(80);
    rig.transmit(other);
    CHECK(rig.backend.take() == other);
    CHECK(rig.backend.take(100ms).empty());
    auto m = rig.dev->metrics();
    CHECK(m.mmds_rx_frames == 1);
    CHECK(m.mmds_tx_frames == 1);
    CHECK(m.tx_packets == 1);
    CHECK(m.rx_packets == 1);
    // The answer waits while the guest has posted no buffer, and comes once it has.
    rig.transmit(header() + arp);
    REQUIRE(eventually([&] { return rig.dev->metrics().mmds_rx_frames == 2; }));
    std::this_thread::sleep_for(30ms);
    CHECK(rig.rx.used_idx() == 1);
    rig.post_receive(2048);
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 2; }));
}

TEST_CASE("virtio-net: a paused device takes and publishes nothing until it resumes, and none is lost")
{
    Rig rig;
    rig.dev->pause();
    auto a = rig.post_receive(4096);
    REQUIRE(rig.backend.inject(header() + frame(200, 'r')));
    std::string const out = header() + frame(80, 't');
    rig.transmit(out);
    std::this_thread::sleep_for(50ms);
    CHECK(rig.rx.used_idx() == 0);
    CHECK(rig.tx.used_idx() == 0);
    CHECK(rig.dev->metrics().tx_packets == 0);
    rig.dev->pause(); // twice is the same
    rig.dev->resume();
    REQUIRE(eventually([&] { return rig.rx.used_idx() == 1 && rig.tx.used_idx() == 1; }));
    CHECK(rig.read_guest(a + 12, 200) == frame(200, 'r'));
    CHECK(rig.backend.take() == out);
    // A reset while paused ends the thread (nothing waits for a resume).
    rig.dev->pause();
    rig.dev->reset();
    CHECK_FALSE(rig.dev->active());
    rig.dev->resume();
}

TEST_CASE("virtio-net: the saved MAC goes back into a fresh device's config space, only before activation")
{
    PairBackend backend;
    vnet::NetOptions options;
    options.mac = vnet::parse_mac("02:00:00:00:00:01").value();
    auto dev = vnet::VirtioNet::create(backend, options).value();
    auto const saved = vnet::VirtioNet::Snapshot { vnet::parse_mac("02:aa:bb:cc:dd:ee").value() };
    REQUIRE(dev->restore_state(saved));
    std::uint8_t cfg[6] {};
    dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(std::memcmp(cfg, "\x02\xaa\xbb\xcc\xdd\xee", 6) == 0);
    CHECK(dev->save_state().mac == saved.mac);
    auto multicast = saved;
    multicast.mac[0] = 0x01;
    CHECK_FALSE(dev->restore_state(multicast));
    Rig rig;
    auto r = rig.dev->restore_state(saved);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::Internal);
}

// The reviewer found nothing covering reset()'s part: with it taken out, every
// case here passed. Watched failing without it (the snapshot's MAC was saved).
TEST_CASE("virtio-net: a driver that resets a restored device before activating it probes the MAC presented then")
{
    auto const a = vnet::parse_mac("02:aa:bb:cc:dd:ee").value();
    auto const b = vnet::parse_mac("02:00:00:00:00:07").value();
    Rig rig;
    rig.dev->reset(); // the rig comes activated; a restore needs a quiet device
    REQUIRE(rig.dev->restore_state(vnet::VirtioNet::Snapshot { a }));
    REQUIRE(rig.dev->set_mac(b));
    // The guest rebooted after the restore: its driver resets and probes anew.
    rig.dev->reset();
    rig.activate();
    CHECK(rig.dev->save_state().mac == b);
}

TEST_CASE("virtio-net: a snapshot saves the MAC the driver uses until the guest moves to the one presented")
{
    auto const a = vnet::parse_mac("02:aa:bb:cc:dd:ee").value();
    auto const b = vnet::parse_mac("02:00:00:00:00:07").value();
    auto const c = vnet::parse_mac("02:00:00:00:00:08").value();
    Rig rig;
    // A booted driver read the MAC the device was made with.
    auto const made = rig.dev->save_state().mac;
    REQUIRE(rig.dev->set_mac(b));
    CHECK(rig.dev->save_state().mac == made);

    // A restored clone: its driver has the snapshot's MAC, the device presents
    // the clone's, and a snapshot of the clone saves the driver's until the
    // guest says it moved.
    rig.dev->reset();
    REQUIRE(rig.dev->restore_state(vnet::VirtioNet::Snapshot { a }));
    rig.activate(); // as the transport's restore does
    REQUIRE(rig.dev->set_mac(b));
    std::uint8_t cfg[6] {};
    rig.dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(std::memcmp(cfg, b.data(), 6) == 0);
    CHECK(rig.dev->save_state().mac == a);
    rig.dev->guest_moved_to(b);
    CHECK(rig.dev->save_state().mac == b);

    // A driver that resets the device probes it again and reads what it presents.
    REQUIRE(rig.dev->set_mac(c));
    CHECK(rig.dev->save_state().mac == b);
    rig.dev->reset();
    rig.activate();
    CHECK(rig.dev->save_state().mac == c);
}

TEST_CASE("virtio-net: set_mac puts a clone's MAC in the config space, a driver with STATUS is told, a bad MAC changes nothing")
{
    // Restored (not active yet): the saved MAC, then the clone's; nobody to tell.
    PairBackend backend;
    vnet::NetOptions options;
    auto dev = vnet::VirtioNet::create(backend, options).value();
    REQUIRE(dev->restore_state(vnet::VirtioNet::Snapshot { vnet::parse_mac("02:aa:bb:cc:dd:ee").value() }));
    REQUIRE(dev->set_mac(vnet::parse_mac("02:00:00:00:00:07").value()));
    std::uint8_t cfg[6] {};
    dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(std::memcmp(cfg, "\x02\x00\x00\x00\x00\x07", 6) == 0);

    // Active with STATUS negotiated: one configuration change per new MAC.
    Rig rig;
    REQUIRE(rig.dev->set_mac(vnet::parse_mac("02:00:00:00:00:08").value()));
    CHECK(rig.signals.config_changes == 1);
    REQUIRE(rig.dev->set_mac(vnet::parse_mac("02:00:00:00:00:08").value()));
    CHECK(rig.signals.config_changes == 1);
    rig.dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(std::memcmp(cfg, "\x02\x00\x00\x00\x00\x08", 6) == 0);
    auto multicast = rig.dev->set_mac({ 0x03, 0, 0, 0, 0, 1 });
    REQUIRE_FALSE(multicast);
    CHECK(multicast.error().kind == ErrorKind::Usage);
    rig.dev->read_config(0, std::as_writable_bytes(std::span(cfg)));
    CHECK(std::memcmp(cfg, "\x02\x00\x00\x00\x00\x08", 6) == 0);
    CHECK(rig.signals.config_changes == 1);

    // Without STATUS the driver is not interrupted.
    Rig plain(AllFeatures & ~vnet::feature::Status);
    REQUIRE(plain.dev->set_mac(vnet::parse_mac("02:00:00:00:00:09").value()));
    CHECK(plain.signals.config_changes == 0);
}
