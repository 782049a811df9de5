// Modern virtio-pci + virtio-blk driven as a guest driver does: scan bus 0 through
// 0xCF8/0xCFC, walk the virtio capabilities, program MSI-X through BAR 0, negotiate
// through the common configuration, run requests and receive MSI-X interrupts.
#include "devices/virtio/blk/device.h"
#include "devices/virtio/pci.h"
#include "tests/devices/pci_test_helpers.h"
#include "tests/devices/virtio_blk_harness.h"
#include "tests/devices/virtio_fake_backend.h"

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <thread>

using namespace strata;
using namespace strata::virtio;
using namespace strata::test;
namespace blk = strata::virtio::blk;

namespace {

constexpr std::uint64_t BarBase = 0xe0000000;

struct Rig {
    TestMemory ram { 8 << 20 };
    TestDriver drv { ram.mem(), 128, 0x1000, 0x100000 };
    MemBackend backend { 1 << 20 };
    RecordingMsi msi;
    CountingLine intx;
    pci::PciBus bus;
    PciPorts ports { bus };
    std::unique_ptr<blk::VirtioBlk> dev;
    std::unique_ptr<PciTransport> t;
    unsigned slot { 0 };
    std::map<unsigned, std::pair<std::uint32_t, std::uint32_t>> caps; // cfg_type -> (offset, length)
    std::uint32_t notify_mult { 0 };
    std::optional<BlkGuest> guest;

    explicit Rig(blk::BlkOptions options = { .id = "pci-disk" })
    {
        dev = blk::VirtioBlk::create(backend, options).value();
        t = PciTransport::create(*dev, ram.mem(), msi, BarBase, &intx).value();
        slot = bus.add(*t).value();
        guest.emplace(ram, drv, [this] { notify(0); });
    }

    template<typename T>
    T rd(std::uint64_t off)
    {
        T v {};
        t->read(off, std::as_writable_bytes(std::span(&v, 1)));
        return v;
    }
    template<typename T>
    void wr(std::uint64_t off, T v)
    {
        t->write(off, std::as_bytes(std::span(&v, 1)));
    }
    std::uint64_t common() const { return caps.at(1).first; }
    void notify(std::uint16_t queue)
    {
        // queue_notify_off reads back as the queue index.
        wr<std::uint16_t>(common() + 0x16, queue);
        auto off = rd<std::uint16_t>(common() + 0x1e);
        wr<std::uint16_t>(caps.at(2).first + std::uint64_t(off) * notify_mult, queue);
    }

    // Finds the device and its structures through configuration space.
    void discover()
    {
        REQUIRE(ports.read32(slot, 0) == 0x10421af4);
        REQUIRE((ports.read32(slot, 8) >> 8) == 0x018000);
        REQUIRE((ports.read32(slot, 8) & 0xff) >= 1);
        for (unsigned n = 0;; ++n) {
            unsigned at = ports.find_cap(slot, 0x09, n);
            if (!at)
                break;
            unsigned type = ports.read(slot, at + 3, 1);
            CHECK(ports.read(slot, at + 4, 1) == 0); // BAR 0
            caps[type] = { ports.read32(slot, at + 8), ports.read32(slot, at + 12) };
            if (type == 2)
                notify_mult = ports.read32(slot, at + 16);
        }
        REQUIRE(caps.count(1));
        REQUIRE(caps.count(2));
        REQUIRE(caps.count(3));
        REQUIRE(caps.count(4));
        REQUIRE(caps.count(5));
        CHECK(notify_mult == 4);
        std::uint64_t bar = (std::uint64_t(ports.read32(slot, 0x14)) << 32) | (ports.read32(slot, 0x10) & ~0xfULL);
        CHECK(bar == BarBase);
        ports.write(slot, 4, 0x6, 2); // memory decoding + bus mastering
    }

    // Enables MSI-X with vector v's message = (0xfee00000, 0x40 + v), unmasked.
    void enable_msix()
    {
        unsigned at = ports.find_cap(slot, 0x11);
        REQUIRE(at);
        unsigned control = ports.read(slot, at + 2, 2);
        unsigned vectors = (control & 0x7ff) + 1;
        CHECK(vectors == 2);
        std::uint32_t table = ports.read32(slot, at + 4);
        CHECK((table & 7) == 0);
        for (unsigned v = 0; v < vectors; ++v) {
            std::uint64_t e = (table & ~7u) + 16ULL * v;
            wr<std::uint32_t>(e, 0xfee00000);
            wr<std::uint32_t>(e + 4, 0);
            wr<std::uint32_t>(e + 8, 0x40 + v);
            wr<std::uint32_t>(e + 12, 0);
        }
        ports.write(slot, at + 2, control | 0x8000, 2);
    }

    std::uint8_t init(std::uint64_t features)
    {
        auto c = common();
        wr<std::uint8_t>(c + 0x14, 0);
        wr<std::uint8_t>(c + 0x14, status::Acknowledge | status::Driver);
        wr<std::uint32_t>(c + 0x08, 0);
        wr<std::uint32_t>(c + 0x0c, static_cast<std::uint32_t>(features));
        wr<std::uint32_t>(c + 0x08, 1);
        wr<std::uint32_t>(c + 0x0c, static_cast<std::uint32_t>(features >> 32));
        wr<std::uint8_t>(c + 0x14, status::Acknowledge | status::Driver | status::FeaturesOk);
        if (!(rd<std::uint8_t>(c + 0x14) & status::FeaturesOk))
            return rd<std::uint8_t>(c + 0x14);
        wr<std::uint16_t>(c + 0x10, 0); // config changes on vector 0
        auto cfg = drv.config();
        wr<std::uint16_t>(c + 0x16, 0);
        CHECK(rd<std::uint16_t>(c + 0x18) == 256);
        wr<std::uint16_t>(c + 0x18, cfg.size);
        wr<std::uint16_t>(c + 0x1a, 1); // queue 0 on vector 1
        wr<std::uint32_t>(c + 0x20, static_cast<std::uint32_t>(cfg.desc));
        wr<std::uint32_t>(c + 0x24, static_cast<std::uint32_t>(cfg.desc >> 32));
        wr<std::uint64_t>(c + 0x28, cfg.driver);
        wr<std::uint64_t>(c + 0x30, cfg.device);
        wr<std::uint16_t>(c + 0x1c, 1);
        wr<std::uint8_t>(c + 0x14, status::Acknowledge | status::Driver | status::FeaturesOk | status::DriverOk);
        return rd<std::uint8_t>(c + 0x14);
    }
};

constexpr std::uint64_t Wanted = feature::Version1 | feature::RingEventIdx | feature::RingIndirectDesc | blk::feature::Flush
    | blk::feature::Discard | blk::feature::WriteZeroes | blk::feature::BlkSize | blk::feature::SegMax | blk::feature::SizeMax;

} // namespace

TEST_CASE("virtio-pci discovery: ids, capabilities, BAR, device config, PCI_CFG window")
{
    Rig rig;
    rig.discover();
    CHECK(rig.rd<std::uint64_t>(rig.caps.at(4).first) == 2048); // capacity
    CHECK(rig.rd<std::uint16_t>(rig.common() + 0x12) == 1);      // num_queues
    // Read device_feature (select 1: VERSION_1 is bit 0) through VIRTIO_PCI_CAP_PCI_CFG.
    rig.wr<std::uint32_t>(rig.common(), 1);
    unsigned at = rig.ports.find_cap(rig.slot, 0x09, 4);
    REQUIRE(rig.ports.read(rig.slot, at + 3, 1) == 5);
    rig.ports.write(rig.slot, at + 4, 0, 1);
    rig.ports.write(rig.slot, at + 8, static_cast<std::uint32_t>(rig.common() + 4));
    rig.ports.write(rig.slot, at + 12, 4);
    CHECK((rig.ports.read32(rig.slot, at + 16) & 1) == 1);
    // And write through it: driver_feature_select = 1.
    rig.ports.write(rig.slot, at + 8, static_cast<std::uint32_t>(rig.common() + 8));
    rig.ports.write(rig.slot, at + 16, 1);
    CHECK(rig.rd<std::uint32_t>(rig.common() + 8) == 1);
    auto n = rig.t->notifiers();
    REQUIRE(n.size() == 1);
    CHECK(n[0].address == BarBase + PciTransport::NotifyOffset);
    CHECK(!n[0].datamatch);
}

TEST_CASE("virtio-pci: full request round trip with MSI-X interrupts")
{
    Rig rig;
    rig.discover();
    rig.enable_msix();
    auto s = rig.init(Wanted);
    REQUIRE((s & status::DriverOk));
    CHECK(rig.rd<std::uint16_t>(rig.common() + 0x1a) == 1); // vector accepted
    auto buf = rig.drv.alloc(4096, 4096);
    std::memset(rig.ram.host(buf), 0x5a, 4096);
    auto w = rig.guest->run(blk::request_type::Out, 8, buf, 4096, true);
    REQUIRE(w.completed);
    CHECK(w.status == blk::status_code::Ok);
    auto back = rig.drv.alloc(4096, 4096);
    auto r = rig.guest->run(blk::request_type::In, 8, back, 4096, false);
    CHECK(r.status == blk::status_code::Ok);
    CHECK(std::memcmp(rig.ram.host(buf), rig.ram.host(back), 4096) == 0);
    // Interrupts went to vector 1 with the message programmed in the table, not INTx.
    auto fired = rig.msi.fired_copy();
    REQUIRE(!fired.empty());
    CHECK(fired.back().vector == 1);
    CHECK(fired.back().message.data == 0x41);
    CHECK(rig.intx.count == 0);
    // The VMM saw routes for both vectors once the guest programmed them.
    bool routed = false;
    for (auto const& e : rig.msi.routes)
        routed = routed || (e.vector == 1 && e.message.address == 0xfee00000 && !e.masked);
    CHECK(routed);
}

TEST_CASE("virtio-pci without MSI-X falls back to the ISR and INTx")
{
    Rig rig;
    rig.discover();
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    CHECK(rig.rd<std::uint16_t>(rig.common() + 0x1a) == 1);
    auto buf = rig.drv.alloc(512);
    CHECK(rig.guest->run(blk::request_type::In, 0, buf, 512, false).status == blk::status_code::Ok);
    CHECK(rig.intx.count > 0);
    CHECK(rig.rd<std::uint8_t>(rig.caps.at(3).first) == 1);
    CHECK(rig.rd<std::uint8_t>(rig.caps.at(3).first) == 0); // reading cleared it
}

TEST_CASE("virtio-pci: out-of-range vectors read back NO_VECTOR, reset clears them")
{
    Rig rig;
    rig.discover();
    auto c = rig.common();
    rig.wr<std::uint16_t>(c + 0x10, 7);
    CHECK(rig.rd<std::uint16_t>(c + 0x10) == 0xffff);
    rig.wr<std::uint16_t>(c + 0x16, 0);
    rig.wr<std::uint16_t>(c + 0x1a, 1);
    CHECK(rig.rd<std::uint16_t>(c + 0x1a) == 1);
    rig.wr<std::uint8_t>(c + 0x14, 0);
    CHECK(rig.rd<std::uint16_t>(c + 0x1a) == 0xffff);
    // A queue selector beyond num_queues reads size 0.
    rig.wr<std::uint16_t>(c + 0x16, 5);
    CHECK(rig.rd<std::uint16_t>(c + 0x18) == 0);
}

TEST_CASE("virtio-pci BAR relocation moves the notify addresses and tells the VMM")
{
    Rig rig;
    rig.discover();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> moves;
    rig.t->set_relocation_handler([&](std::uint64_t o, std::uint64_t n) { moves.emplace_back(o, n); });
    rig.ports.write(rig.slot, 4, 0, 2);
    rig.ports.write(rig.slot, 0x10, 0xf0008000);
    rig.ports.write(rig.slot, 0x14, 0);
    CHECK(moves.empty()); // decoding is off
    rig.ports.write(rig.slot, 4, 0x6, 2);
    REQUIRE(moves.size() == 1);
    CHECK(moves[0] == std::pair<std::uint64_t, std::uint64_t>(BarBase, 0xf0008000));
    CHECK(rig.t->notifiers()[0].address == 0xf0008000 + PciTransport::NotifyOffset);
}

TEST_CASE("virtio-pci: pause and reset mid-flight behave as on mmio")
{
    Rig rig;
    rig.discover();
    rig.enable_msix();
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    rig.backend.hold(true);
    auto buf = rig.drv.alloc(2048, 4096);
    for (unsigned i = 0; i < 4; ++i)
        rig.guest->queue(blk::request_type::In, i, buf + 512 * i, 512, false);
    rig.guest->notify();
    for (int i = 0; i < 500 && rig.backend.held() < 4; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(rig.backend.held() == 4);
    rig.dev->request_pause();
    std::thread releaser([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        rig.backend.hold(false);
    });
    rig.dev->wait_paused();
    releaser.join();
    CHECK(rig.drv.used_idx() == 4);
    rig.dev->resume();
    rig.backend.hold(true);
    rig.guest->queue(blk::request_type::In, 0, buf, 512, false);
    rig.guest->notify();
    for (int i = 0; i < 500 && rig.backend.held() < 1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::thread releaser2([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        rig.backend.hold(false);
    });
    rig.wr<std::uint8_t>(rig.common() + 0x14, 0);
    releaser2.join();
    CHECK(rig.backend.in_flight() == 0);
    CHECK(!rig.dev->active());
}

TEST_CASE("virtio-pci state: a live function's snapshot restores into a fresh one, moved BAR, MSI-X routes and queue included")
{
    RecordingMsi msi2; // the new function's sink; outlives the rig that holds it
    Rig rig;
    rig.discover();
    // The guest moved BAR 0 before it set the device up.
    constexpr std::uint64_t Moved = 0xf0008000;
    rig.ports.write(rig.slot, 4, 0, 2);
    rig.ports.write(rig.slot, 0x10, static_cast<std::uint32_t>(Moved));
    rig.ports.write(rig.slot, 0x14, 0);
    rig.ports.write(rig.slot, 4, 0x6, 2);
    REQUIRE(rig.t->bar_address() == Moved);
    rig.enable_msix();
    REQUIRE((rig.init(Wanted) & status::DriverOk));
    auto buf = rig.drv.alloc(4096, 4096);
    std::memset(rig.ram.host(buf), 0x33, 4096);
    REQUIRE(rig.guest->run(blk::request_type::Out, 8, buf, 4096, true).completed);
    // Vector 0 masked by the guest, to see the mask bit come back too.
    unsigned const msix_at = rig.ports.find_cap(rig.slot, 0x11);
    std::uint32_t const table = rig.ports.read32(rig.slot, msix_at + 4) & ~7u;
    rig.wr<std::uint32_t>(table + 12, 1);
    rig.wr<std::uint16_t>(rig.common() + 0x16, 0); // queue_select

    rig.dev->pause();
    PciTransportSnapshot pci;
    auto saved = rig.t->save_state(pci);
    REQUIRE(saved.has_value());
    CHECK(saved.value().queues.at(0).index == 1);
    CHECK(pci.bars[0] == Moved);
    CHECK(pci.config_vector == 0);
    CHECK(pci.queue_vectors == std::vector<std::uint16_t> { 1 });
    CHECK(pci.msix.enabled);
    CHECK(pci.msix.vectors.at(0).control == 1);

    // A fresh device and function over the same RAM, attached at the VMM's
    // address for it (BarBase): the restore moves it to where the guest had it.
    auto dev2 = blk::VirtioBlk::create(rig.backend, { .id = "pci-disk" }).value();
    auto t2 = PciTransport::create(*dev2, rig.ram.mem(), msi2, BarBase, &rig.intx).value();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> moves;
    t2->set_relocation_handler([&](std::uint64_t o, std::uint64_t n) { moves.emplace_back(o, n); });
    // The old function goes, as its VMM does; the new one sits on a bus of its own.
    rig.t.reset();
    pci::PciBus bus2;
    PciPorts ports2 { bus2 };
    unsigned const slot2 = bus2.add(*t2).value();
    REQUIRE(t2->restore_state(saved.value(), pci).has_value());
    CHECK(moves == std::vector<std::pair<std::uint64_t, std::uint64_t>> { { BarBase, Moved } });
    CHECK(t2->bar_address() == Moved);
    CHECK(t2->notifiers().at(0).address == Moved + PciTransport::NotifyOffset);
    // Every vector's route was reported again: vector 1 live, vector 0 masked.
    bool live1 = false, masked0 = false;
    for (auto const& e : msi2.routes) {
        live1 = live1 || (e.vector == 1 && e.message.address == 0xfee00000 && e.message.data == 0x41 && !e.masked);
        masked0 = masked0 || (e.vector == 0 && e.masked);
    }
    CHECK(live1);
    CHECK(masked0);

    // The guest goes on with the new function: its registers read as it left them.
    rig.dev = std::move(dev2);
    rig.t = std::move(t2);
    auto const c = rig.common();
    CHECK((rig.rd<std::uint8_t>(c + 0x14) & status::DriverOk) != 0);
    CHECK(rig.rd<std::uint16_t>(c + 0x10) == 0);
    CHECK(rig.rd<std::uint16_t>(c + 0x1a) == 1);
    CHECK(rig.rd<std::uint16_t>(c + 0x1c) == 1);
    CHECK(rig.rd<std::uint32_t>(table + 8 + 16) == 0x41);
    CHECK(rig.rd<std::uint32_t>(table + 12) == 1);
    CHECK((ports2.read(slot2, 4, 2) & 0x6) == 0x6);
    CHECK((ports2.read(slot2, msix_at + 2, 2) & 0x8000) != 0);
    CHECK(((std::uint64_t(ports2.read32(slot2, 0x14)) << 32) | (ports2.read32(slot2, 0x10) & ~0xfULL)) == Moved);
    auto back = rig.drv.alloc(4096, 4096);
    auto r = rig.guest->run(blk::request_type::In, 8, back, 4096, false);
    REQUIRE(r.completed);
    CHECK(r.status == blk::status_code::Ok);
    CHECK(std::memcmp(rig.ram.host(buf), rig.ram.host(back), 4096) == 0);
    // The queue's interrupt goes to its vector with the restored message. (The
    // request above may need none: the test driver never moves used_event.)
    rig.t->signal_used(0);
    auto fired = msi2.fired_copy();
    REQUIRE(!fired.empty());
    CHECK(fired.back().vector == 1);
    CHECK(fired.back().message.data == 0x41);
    // The masked configuration vector keeps its interrupt pending in the PBA.
    rig.t->signal_config_change();
    CHECK(msi2.fired_copy().size() == fired.size());
    CHECK((rig.rd<std::uint64_t>(PciTransport::MsixPbaOffset) & 1) == 1);
}

TEST_CASE("virtio-pci state: a snapshot of another shape is refused")
{
    RecordingMsi msi2;
    Rig rig;
    rig.discover();
    PciTransportSnapshot pci;
    auto saved = rig.t->save_state(pci);
    REQUIRE(saved.has_value());
    auto dev2 = blk::VirtioBlk::create(rig.backend, { .id = "pci-disk" }).value();
    auto t2 = PciTransport::create(*dev2, rig.ram.mem(), msi2, BarBase, &rig.intx).value();
    auto fewer = pci;
    fewer.msix.vectors.pop_back();
    auto r = t2->restore_state(saved.value(), fewer);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::BadInput);
    auto more = pci;
    more.queue_vectors.push_back(0);
    CHECK_FALSE(t2->restore_state(saved.value(), more).has_value());
    t2.reset();
}
