// The Firecracker-shaped snapshot file (vmm/snapshot_file.h) and differential
// memory files (vmm/memory_file.h), without KVM: a snapshot file decodes to what
// was encoded, and one flipped bit anywhere or a cut-off end is refused;
// a differential memory file holds exactly its pages, zero pages included,
// its checksum notices a changed page, and laying it over a base gives the RAM
// it was taken from. A machine state's newer sections (virtio-pci, network
// interfaces, metadata) round-trip, and versions it does not read are refused.
#include "imaging/layer/crc32c.h"
#include "tests/support/temp_dir.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/machine_state.h"
#include "vmm/memory_file.h"
#include "vmm/snapshot_file.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fcntl.h>
#include <unistd.h>

using namespace strata;

namespace {

SnapshotFile sample()
{
    SnapshotFile f;
    f.vcpus = 2;
    f.memory_mib = 64;
    f.cpu_template = CpuTemplate::Minimal;
    SnapshotDrive d;
    d.disk.id = "disk0";
    d.disk.path = "/src/disk0.raw";
    d.disk.cache = DiskCache::Writeback;
    d.capture = "snap.disk-disk0";
    d.disk.rate_limit.bandwidth = TokenBucketConfig { 1 << 20, 4096, 100 };
    d.disk.rate_limit.ops = TokenBucketConfig { 50, 0, 100 };
    d.disk.rate_limit_group = "shared";
    f.drives.push_back(d);
    f.memory.push_back(MemoryLayer { "/snaps/base.mem", 0x1234, false, {} });
    f.memory.push_back(MemoryLayer { "/snaps/diff1.mem", 0x5678, true, { { 3, 2 }, { 100, 1 } } });
    for (int i = 0; i < 100; ++i)
        f.machine_state.push_back(static_cast<std::byte>(i));
    f.transport = Transport::Pci;
    NetConfig n;
    n.id = "eth0";
    n.mac = "02:aa:00:00:00:01";
    n.netns_auto = true;
    n.tx_limit.bandwidth = TokenBucketConfig { 1000, 10, 100 };
    f.nets.push_back(n);
    f.mmds.interfaces = { "eth0" };
    f.mmds.v2 = true;
    return f;
}

// The file of `bytes` with its JSON description changed by `edit`, lengths and
// CRC made right again (as another writer would have made it).
template<typename F>
std::vector<std::byte> with_description(std::vector<std::byte> const& bytes, F edit)
{
    std::uint64_t text_len = 0;
    std::memcpy(&text_len, bytes.data() + 16, 8);
    std::string text(reinterpret_cast<char const*>(bytes.data() + 32), text_len);
    auto doc = nlohmann::json::parse(text);
    edit(doc);
    auto const changed = doc.dump();
    std::vector<std::byte> file(bytes.begin(), bytes.begin() + 32);
    file.insert(file.end(), reinterpret_cast<std::byte const*>(changed.data()), reinterpret_cast<std::byte const*>(changed.data()) + changed.size());
    file.insert(file.end(), bytes.begin() + 32 + static_cast<std::ptrdiff_t>(text_len), bytes.end());
    std::uint64_t const len = changed.size();
    std::memcpy(file.data() + 16, &len, 8);
    std::uint32_t const crc = crc32c(std::span<std::byte const>(file).subspan(16));
    std::memcpy(file.data() + 12, &crc, 4);
    return file;
}

} // namespace

TEST_CASE("a snapshot file decodes to what was encoded")
{
    auto bytes = encode_snapshot_file(sample());
    auto decoded = decode_snapshot_file(bytes);
    REQUIRE_MESSAGE(decoded.has_value(), decoded.error().message);
    auto const& f = decoded.value();
    CHECK(f.vcpus == 2);
    CHECK(f.memory_mib == 64);
    CHECK(f.cpu_template == CpuTemplate::Minimal);
    REQUIRE(f.drives.size() == 1);
    CHECK(f.drives[0].disk.id == "disk0");
    CHECK(f.drives[0].disk.cache == DiskCache::Writeback);
    CHECK(f.drives[0].capture == "snap.disk-disk0");
    CHECK(f.drives[0].disk.rate_limit == sample().drives[0].disk.rate_limit);
    CHECK(f.drives[0].disk.rate_limit_group == "shared");
    REQUIRE(f.memory.size() == 2);
    CHECK(f.memory[1].diff);
    CHECK(f.memory[1].crc == 0x5678);
    CHECK(f.memory[1].runs == std::vector<PageRun> { { 3, 2 }, { 100, 1 } });
    CHECK(f.machine_state == sample().machine_state);
    CHECK(f.transport == Transport::Pci);
    REQUIRE(f.nets.size() == 1);
    CHECK(f.nets[0].id == "eth0");
    CHECK(f.nets[0].mac == "02:aa:00:00:00:01");
    CHECK(f.nets[0].netns_auto);
    CHECK(f.nets[0].tap.empty());
    CHECK(f.nets[0].tx_limit == sample().nets[0].tx_limit);
    CHECK(f.nets[0].rx_limit.unlimited());
    CHECK(f.mmds.interfaces == std::vector<std::string> { "eth0" });
    CHECK(f.mmds.v2);
}

TEST_CASE("a snapshot file written before transports and interfaces were recorded reads as virtio-mmio without interfaces")
{
    auto old = sample();
    old.transport = Transport::Mmio;
    old.nets.clear();
    old.mmds = {};
    // Drop the newer keys from the JSON, as the older writer made it.
    auto file = with_description(encode_snapshot_file(old), [](nlohmann::json& doc) {
        doc.erase("transport");
        doc.erase("network_interfaces");
        doc.erase("mmds");
        for (auto& d : doc.at("drives")) {
            d.erase("rate_limiter");
            d.erase("rate_limit_group");
        }
    });
    auto decoded = decode_snapshot_file(file);
    REQUIRE_MESSAGE(decoded.has_value(), decoded.error().message);
    CHECK(decoded.value().transport == Transport::Mmio);
    CHECK(decoded.value().nets.empty());
    CHECK(decoded.value().mmds.interfaces.empty());
    REQUIRE(decoded.value().drives.size() == 1);
    CHECK(decoded.value().drives[0].disk.rate_limit.unlimited());
    CHECK(decoded.value().drives[0].disk.rate_limit_group.empty());
}

TEST_CASE("a snapshot file whose drive limits could not be applied is refused")
{
    auto const bytes = encode_snapshot_file(sample());
    auto no_refill = with_description(bytes, [](nlohmann::json& doc) { doc["drives"][0]["rate_limiter"]["ops"]["refill_time"] = 0; });
    auto r = decode_snapshot_file(no_refill);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::BadInput);
    CHECK(r.error().message.find("disk0") != std::string::npos);
    auto bad_group = with_description(bytes, [](nlohmann::json& doc) { doc["drives"][0]["rate_limit_group"] = "../x"; });
    r = decode_snapshot_file(bad_group);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::BadInput);
    CHECK(r.error().message.find("rate limit group") != std::string::npos);
}

TEST_CASE("a snapshot file with one bit flipped anywhere, or cut short, is refused")
{
    auto const bytes = encode_snapshot_file(sample());
    for (std::size_t at = 0; at < bytes.size(); ++at) {
        auto bad = bytes;
        bad[at] ^= std::byte { 0x10 };
        auto r = decode_snapshot_file(bad);
        INFO("byte ", at);
        REQUIRE_FALSE(r.has_value());
        // The version field flipped reads as another version; anything else is corrupt.
        CHECK((r.error().kind == ErrorKind::BadInput || (at >= 8 && at < 12 && r.error().kind == ErrorKind::Unsupported)));
    }
    for (std::size_t len : { std::size_t { 0 }, std::size_t { 31 }, bytes.size() - 1 }) {
        auto r = decode_snapshot_file(std::span(bytes).first(len));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().kind == ErrorKind::BadInput);
    }
}

TEST_CASE("a differential memory file holds its pages, zero or not, and restores them over a base")
{
    test::TempDir dir;
    constexpr std::size_t page = 4096, pages = 64;
    std::vector<std::byte> before(pages * page), after;
    for (std::size_t i = 0; i < before.size(); ++i)
        before[i] = static_cast<std::byte>(i * 7 + 1);
    after = before;
    // Pages 5 and 6 get new data, page 40 becomes zero: all three are dirty.
    std::memset(after.data() + 5 * page, 0xab, 2 * page);
    std::memset(after.data() + 40 * page, 0, page);
    std::vector<std::uint64_t> bitmap(1);
    bitmap[0] = (1ull << 5) | (1ull << 6) | (1ull << 40);
    auto runs = page_runs(bitmap, pages);
    CHECK(runs == std::vector<PageRun> { { 5, 2 }, { 40, 1 } });
    CHECK(page_count(runs) == 3);

    auto const base_path = dir.path("base.mem"), diff_path = dir.path("diff.mem");
    REQUIRE(write_memory_file(base_path, before).has_value());
    auto crc = write_memory_diff(diff_path, after, runs);
    REQUIRE(crc.has_value());
    int fd = ::open(diff_path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    auto again = memory_diff_crc(fd, after.size(), runs);
    REQUIRE(again.has_value());
    CHECK(again.value() == crc.value());

    // The base's bytes, then the diff laid over them, give `after` exactly.
    std::vector<std::byte> ram(before.size());
    int base_fd = ::open(base_path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(base_fd >= 0);
    REQUIRE(::pread(base_fd, ram.data(), ram.size(), 0) == static_cast<ssize_t>(ram.size()));
    ::close(base_fd);
    REQUIRE(read_memory_diff(fd, runs, ram).has_value());
    CHECK(ram == after);

    // A run outside the RAM is refused; a changed page changes the checksum.
    CHECK_FALSE(memory_diff_crc(fd, after.size(), std::vector<PageRun> { { 63, 2 } }).has_value());
    ::close(fd);
    int rw = ::open(diff_path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(rw >= 0);
    std::byte one { 1 };
    REQUIRE(::pwrite(rw, &one, 1, 40 * page + 9) == 1);
    auto changed = memory_diff_crc(rw, after.size(), runs);
    REQUIRE(changed.has_value());
    CHECK(changed.value() != crc.value());
    ::close(rw);
}

TEST_CASE("a machine state with virtio-pci, network and metadata sections decodes to what was encoded, and other versions are refused")
{
    MachineState s;
    s.cpu = "TestVendor 1/2/3 xsave 4096";
    s.memory_bytes = 64 << 20;
    s.virtio.resize(2);
    s.virtio[1].queues.push_back(virtio::QueueSnapshot { virtio::QueueConfig { 256, true, 0x1000, 0x2000, 0x3000 }, 77 });
    s.pci.resize(2);
    s.pci[1].bars[0] = 0xe0008000;
    s.pci[1].config[4] = std::byte { 6 };
    s.pci[1].msix.enabled = true;
    s.pci[1].msix.vectors.push_back(pci::MsixVectorSnapshot { 0xfee00000, 0, 0x41, 0, true });
    s.pci[1].config_vector = 0;
    s.pci[1].queue_vectors = { 1, 2 };
    s.pci_config_address = 0x80000810;
    s.pci_host_bridge[4] = std::byte { 2 };
    NetInterfaceState n;
    n.id = "eth0";
    n.mac = { 0x02, 1, 2, 3, 4, 5 };
    n.tx.config.bandwidth = TokenBucketConfig { 1000, 0, 100 };
    n.tx.bandwidth = TokenBucket::Level { -20, 0 };
    s.nets.push_back(n);
    s.mmds_data = R"({"a":"b"})";
    auto bytes = encode_machine_state(s);
    auto d = decode_machine_state(bytes);
    REQUIRE_MESSAGE(d.has_value(), d.error().message);
    auto const& t = d.value();
    CHECK(t.virtio.at(1).queues.at(0).index == 77);
    REQUIRE(t.pci.size() == 2);
    CHECK(t.pci[1].bars[0] == 0xe0008000);
    CHECK(t.pci[1].config[4] == std::byte { 6 });
    CHECK(t.pci[1].msix.enabled);
    REQUIRE(t.pci[1].msix.vectors.size() == 1);
    CHECK(t.pci[1].msix.vectors[0].data == 0x41);
    CHECK(t.pci[1].msix.vectors[0].pending);
    CHECK(t.pci[1].queue_vectors == std::vector<std::uint16_t> { 1, 2 });
    CHECK(t.pci_config_address == 0x80000810);
    CHECK(t.pci_host_bridge[4] == std::byte { 2 });
    REQUIRE(t.nets.size() == 1);
    CHECK(t.nets[0].id == "eth0");
    CHECK(t.nets[0].mac == n.mac);
    CHECK(t.nets[0].tx.config == n.tx.config);
    CHECK(t.nets[0].tx.bandwidth.budget == -20);
    CHECK(t.mmds_data == s.mmds_data);

    for (std::uint32_t version : { 0u, 3u, 99u }) {
        auto other = bytes;
        std::memcpy(other.data() + 8, &version, 4);
        auto r = decode_machine_state(other);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().kind == ErrorKind::Unsupported);
    }
    // A version 1 header over a version 2 payload has trailing bytes: malformed.
    auto relabelled = bytes;
    std::uint32_t const one = 1;
    std::memcpy(relabelled.data() + 8, &one, 4);
    auto r = decode_machine_state(relabelled);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::BadInput);
}

TEST_CASE("a TSC deadline that had fired when the vCPU stopped is saved as the TSC, so the restored timer fires")
{
    auto entry = [](std::uint32_t index, std::uint64_t data) {
        kvm_msr_entry e {};
        e.index = index;
        e.data = data;
        return e;
    };
    constexpr std::uint32_t tsc = 0x10, deadline = 0x6e0, star = 0xc0000081;
    std::vector<kvm_msr_entry> fired { entry(star, 7), entry(deadline, 0), entry(tsc, 123456789) };
    strata::rearm_fired_tsc_deadline(fired);
    CHECK(fired[1].data == 123456789);
    CHECK(fired[0].data == 7);
    CHECK(fired[2].data == 123456789);

    std::vector<kvm_msr_entry> armed { entry(tsc, 100), entry(deadline, 5000) };
    strata::rearm_fired_tsc_deadline(armed);
    CHECK(armed[1].data == 5000);

    std::vector<kvm_msr_entry> no_tsc { entry(deadline, 0) };
    strata::rearm_fired_tsc_deadline(no_tsc);
    CHECK(no_tsc[0].data == 0);
}
