// Split virtqueue and descriptor-chain walking over hostile rings.
#include "devices/virtio/queue.h"
#include "tests/devices/virtio_test_driver.h"

#include <doctest/doctest.h>

using namespace strata;
using namespace strata::virtio;
using strata::test::Seg;
using strata::test::TestDriver;
using strata::test::TestMemory;

namespace {

constexpr std::uint64_t AllFeatures = feature::Version1 | feature::RingIndirectDesc | feature::RingEventIdx;

struct Fixture {
    TestMemory ram { 1 << 20 };
    TestDriver drv { ram.mem(), 16, 0x1000, 0x10000 };

    Virtqueue queue(std::uint64_t features = AllFeatures)
    {
        return Virtqueue::create(ram.mem(), drv.config(), 256, features).value();
    }
    DescriptorChain chain(std::uint16_t head, bool indirect = true)
    {
        return DescriptorChain(ram.mem(), drv.desc_table(), drv.size(), head, indirect);
    }
};

// Walks a chain to its end; returns the descriptors or the error message.
Result<std::vector<Descriptor>> walk(DescriptorChain c)
{
    std::vector<Descriptor> out;
    while (true) {
        STRATA_TRY(d, c.next());
        if (!d)
            return out;
        out.push_back(*d);
    }
}

// The walk was refused, for the reason named (a refusal for another reason
// would hide that the rule under test is missing).
void refused(DescriptorChain c, std::string const& why)
{
    auto r = walk(std::move(c));
    REQUIRE_MESSAGE(!r, "the chain was accepted; expected: ", why);
    CHECK(r.error().kind == ErrorKind::BadInput);
    INFO(r.error().message);
    CHECK(r.error().message.find(why) != std::string::npos);
}

} // namespace

TEST_CASE("a plain chain yields its descriptors in order with directions")
{
    Fixture f;
    auto head = f.drv.build_chain({ { 0x20000, 16, false }, { 0x21000, 512, true }, { 0x22000, 1, true } });
    auto d = walk(f.chain(head));
    REQUIRE(d);
    REQUIRE(d.value().size() == 3);
    CHECK(d.value()[0].addr == 0x20000);
    CHECK(!d.value()[0].writable);
    CHECK(d.value()[1].len == 512);
    CHECK(d.value()[2].writable);
}

TEST_CASE("a NEXT loop is cut by the chain TTL")
{
    Fixture f;
    f.drv.set_desc(0, 0x20000, 16, DescFlagNext, 1);
    f.drv.set_desc(1, 0x20000, 16, DescFlagNext, 0);
    refused(f.chain(0), "chain longer than the queue size (loop?)");
    // A self-loop too.
    f.drv.set_desc(2, 0x20000, 16, DescFlagNext, 2);
    refused(f.chain(2), "chain longer than the queue size (loop?)");
}

TEST_CASE("out-of-range head and next indexes are rejected")
{
    Fixture f;
    refused(f.chain(16), "descriptor index 16 out of range (table of 16)");
    refused(f.chain(0xffff), "descriptor index 65535 out of range");
    f.drv.set_desc(3, 0x20000, 16, DescFlagNext, 16);
    refused(f.chain(3), "descriptor index 16 out of range");
}

TEST_CASE("a chain of exactly queue-size descriptors is fine, one more is not")
{
    Fixture f;
    for (std::uint16_t i = 0; i < 16; ++i)
        f.drv.set_desc(i, 0x20000, 1, i < 15 ? DescFlagNext : 0, static_cast<std::uint16_t>(i + 1));
    auto d = walk(f.chain(0));
    REQUIRE(d);
    CHECK(d.value().size() == 16);
    f.drv.set_desc(15, 0x20000, 1, DescFlagNext, 0);
    refused(f.chain(0), "chain longer than the queue size");
}

TEST_CASE("indirect tables: good, bad length, nested, with NEXT, not negotiated, outside memory")
{
    Fixture f;
    auto head = f.drv.build_indirect({ { 0x20000, 16, false }, { 0x21000, 4096, true }, { 0x22000, 1, true } });
    auto d = walk(f.chain(head));
    REQUIRE(d);
    REQUIRE(d.value().size() == 3);
    CHECK(d.value()[1].len == 4096);
    refused(f.chain(head, false), "indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC");

    std::uint64_t table = f.drv.alloc(64);
    for (std::uint32_t len : { 0u, 8u, 17u, 40u }) {
        CAPTURE(len);
        f.drv.set_desc(5, table, len, DescFlagIndirect, 0);
        refused(f.chain(5), "indirect table length " + std::to_string(len) + " is not a non-zero multiple of 16");
    }
    // Longer than the queue.
    f.drv.set_desc(5, table, 16 * 17, DescFlagIndirect, 0);
    refused(f.chain(5), "indirect table longer than the queue size");
    // INDIRECT together with NEXT.
    f.drv.set_desc(5, table, 16, DescFlagIndirect | DescFlagNext, 6);
    refused(f.chain(5), "indirect descriptor with NEXT set");
    // Outside guest memory.
    f.drv.set_desc(5, (1 << 20) - 16, 32, DescFlagIndirect, 0);
    refused(f.chain(5), "indirect table outside guest memory");
    // A table whose addr + len wraps around 2^64 onto low guest memory, which a
    // check of the end address alone would accept.
    f.drv.set_desc(5, ~0ULL - 15, 32, DescFlagIndirect, 0);
    refused(f.chain(5), "indirect table outside guest memory");
    // Nested: the table's entry is itself indirect.
    f.drv.write_desc(table, 0, table, 16, DescFlagIndirect, 0);
    f.drv.set_desc(5, table, 16, DescFlagIndirect, 0);
    refused(f.chain(5), "nested indirect descriptor");
    // A loop inside the table, and an index beyond it.
    f.drv.write_desc(table, 0, 0x20000, 1, DescFlagNext, 1);
    f.drv.write_desc(table, 1, 0x20000, 1, DescFlagNext, 0);
    f.drv.set_desc(5, table, 32, DescFlagIndirect, 0);
    refused(f.chain(5), "indirect chain longer than its table (loop?)");
    // An index beyond the table (taken before the table's TTL runs out).
    f.drv.write_desc(table, 0, 0x20000, 1, DescFlagNext, 2);
    refused(f.chain(5), "descriptor index 2 out of range (table of 2)");
}

TEST_CASE("a failed chain stays failed")
{
    Fixture f;
    auto c = f.chain(99);
    auto first = c.next();
    REQUIRE(!first);
    CHECK(first.error().message.find("descriptor index 99 out of range") != std::string::npos);
    auto again = c.next();
    REQUIRE(!again);
    CHECK(again.error().message.find("used after an error") != std::string::npos);
}

TEST_CASE("queue creation checks size, alignment and placement")
{
    TestMemory ram(1 << 20);
    TestDriver drv(ram.mem(), 16, 0x1000, 0x10000);
    auto cfg = drv.config();
    CHECK(Virtqueue::create(ram.mem(), cfg, 256, AllFeatures));
    auto refused_queue = [&](QueueConfig const& c, std::string const& why) {
        auto q = Virtqueue::create(ram.mem(), c, 256, AllFeatures);
        REQUIRE_MESSAGE(!q, "the queue was accepted; expected: ", why);
        INFO(q.error().message);
        CHECK(q.error().message.find(why) != std::string::npos);
    };
    for (int bad : { 0, 3, 24, 512 }) {
        auto c = cfg;
        c.size = static_cast<std::uint16_t>(bad);
        refused_queue(c, "size " + std::to_string(bad) + " is not a power of 2 at most 256");
    }
    auto c = cfg;
    c.desc += 8;
    refused_queue(c, "ring addresses are misaligned");
    c = cfg;
    c.device += 2;
    refused_queue(c, "ring addresses are misaligned");
    c = cfg;
    c.device = (1 << 20) - 64;
    refused_queue(c, "used ring outside guest memory");
    // A ring whose end wraps around 2^64.
    c = cfg;
    c.desc = ~0ULL - 15;
    refused_queue(c, "descriptor table outside guest memory");
}

TEST_CASE("peek/pop/add_used follow the rings")
{
    Fixture f;
    auto q = f.queue();
    CHECK(!q.peek().value());
    auto h1 = f.drv.build_chain({ { 0x20000, 1, true } });
    auto h2 = f.drv.build_chain({ { 0x20000, 1, true } });
    f.drv.publish(h1);
    f.drv.publish(h2);
    auto p = q.peek();
    REQUIRE(p.value());
    CHECK(*p.value() == h1);
    CHECK(*q.peek().value() == h1); // peek does not consume
    q.pop();
    CHECK(*q.peek().value() == h2);
    q.pop();
    CHECK(!q.peek().value());
    q.add_used(h1, 7);
    q.add_used(h2, 9);
    CHECK(f.drv.used_idx() == 2);
    CHECK(f.drv.used_elem(0) == std::pair<std::uint32_t, std::uint32_t>(h1, 7));
    CHECK(f.drv.used_elem(1) == std::pair<std::uint32_t, std::uint32_t>(h2, 9));
}

TEST_CASE("an avail index more than queue-size ahead fails the queue")
{
    Fixture f;
    auto q = f.queue();
    f.drv.set_avail_idx(17);
    auto p = q.peek();
    REQUIRE(!p);
    CHECK(p.error().message.find("avail->idx 17 is more than the queue size (16) ahead of 0") != std::string::npos);
    f.drv.set_avail_idx(16);
    CHECK(q.peek().value());
}

TEST_CASE("EVENT_IDX: interrupts follow used_event, notifications set avail_event")
{
    Fixture f;
    auto q = f.queue();
    for (int i = 0; i < 3; ++i)
        f.drv.publish(f.drv.build_chain({ { 0x20000, 1, true } }));
    // The driver asks for an interrupt once the used index passes 1.
    f.drv.set_used_event(1);
    q.pop();
    q.add_used(0, 1); // used idx 1: event 1 not yet passed
    CHECK(!q.needs_interrupt());
    q.pop();
    q.add_used(1, 1); // used idx 2: passes event 1
    CHECK(q.needs_interrupt());
    CHECK(!q.needs_interrupt()); // nothing new
    // enable_notification writes our next avail index and reports pending work.
    auto more = q.enable_notification();
    REQUIRE(more);
    CHECK(more.value());
    CHECK(f.drv.avail_event() == 2);
    q.pop();
    CHECK(!q.enable_notification().value());
    CHECK(f.drv.avail_event() == 3);
}

TEST_CASE("without EVENT_IDX the NO_INTERRUPT flag suppresses interrupts")
{
    Fixture f;
    auto q = f.queue(feature::Version1);
    f.drv.publish(f.drv.build_chain({ { 0x20000, 1, true } }));
    q.pop();
    q.add_used(0, 1);
    f.drv.set_avail_flags(AvailFlagNoInterrupt);
    CHECK(!q.needs_interrupt());
    f.drv.publish(f.drv.build_chain({ { 0x20000, 1, true } }));
    q.pop();
    q.add_used(1, 1);
    f.drv.set_avail_flags(0);
    CHECK(q.needs_interrupt());
    // Indirect descriptors are refused when not negotiated.
    auto h = f.drv.build_indirect({ { 0x20000, 1, true } });
    CHECK(!walk(q.chain(h)));
}
