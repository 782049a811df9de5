#include "vmm/snapshot_file.h"

#include "base/fd.h"
#include "imaging/layer/crc32c.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

namespace {

using nlohmann::json;

constexpr char snapshot_magic[8] = { 'S', 'T', 'R', 'A', 'T', 'A', 'F', 'S' };
constexpr std::size_t snapshot_header_bytes = 32;

void put_le(std::vector<std::byte>& out, std::size_t at, std::uint64_t value, std::size_t bytes)
{
    for (std::size_t i = 0; i < bytes; ++i)
        out[at + i] = static_cast<std::byte>(value >> (8 * i));
}

std::uint64_t get_le(std::span<std::byte const> in, std::size_t at, std::size_t bytes)
{
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < bytes; ++i)
        value |= std::to_integer<std::uint64_t>(in[at + i]) << (8 * i);
    return value;
}

char const* cache_name(DiskCache c)
{
    switch (c) {
    case DiskCache::Writeback: return "writeback";
    case DiskCache::Unsafe: return "unsafe";
    default: return "none";
    }
}

json bucket_json(TokenBucketConfig const& b)
{
    return { { "size", b.size }, { "one_time_burst", b.one_time_burst }, { "refill_time", b.refill_time_ms } };
}

json limiter_json(RateLimiterConfig const& c)
{
    return { { "bandwidth", bucket_json(c.bandwidth) }, { "ops", bucket_json(c.ops) } };
}

TokenBucketConfig bucket_from(json const& j)
{
    return TokenBucketConfig { j.at("size").get<std::uint64_t>(), j.at("one_time_burst").get<std::uint64_t>(),
        j.at("refill_time").get<std::uint64_t>() };
}

RateLimiterConfig limiter_from(json const& j)
{
    return RateLimiterConfig { bucket_from(j.at("bandwidth")), bucket_from(j.at("ops")) };
}

Error bad_snapshot(std::string const& why)
{
    return make_error(ErrorKind::BadInput, "not a usable snapshot file: " + why);
}

} // namespace

std::vector<std::byte> encode_snapshot_file(SnapshotFile const& file)
{
    json drives = json::array();
    for (auto const& d : file.drives) {
        drives.push_back({ { "drive_id", d.disk.id }, { "path_on_host", d.disk.path }, { "format", d.disk.format },
            { "is_read_only", d.disk.read_only }, { "is_root_device", d.disk.boot }, { "cache", cache_name(d.disk.cache) },
            { "capture", d.capture }, { "rate_limiter", limiter_json(d.disk.rate_limit) },
            { "rate_limit_group", d.disk.rate_limit_group } });
    }
    json memory = json::array();
    for (auto const& m : file.memory) {
        json runs = json::array();
        for (auto const& r : m.runs)
            runs.push_back({ r.first, r.count });
        memory.push_back({ { "path", m.path.string() }, { "crc", m.crc }, { "diff", m.diff }, { "runs", runs } });
    }
    json nets = json::array();
    for (auto const& n : file.nets) {
        nets.push_back({ { "iface_id", n.id }, { "host_dev_name", n.tap }, { "guest_mac", n.mac }, { "netns_auto", n.netns_auto },
            { "rx_rate_limiter", limiter_json(n.rx_limit) }, { "tx_rate_limiter", limiter_json(n.tx_limit) } });
    }
    json doc = { { "vcpu_count", file.vcpus }, { "mem_size_mib", file.memory_mib },
        { "cpu_template", file.cpu_template == CpuTemplate::Minimal ? "minimal" : "host" }, { "drives", drives },
        { "memory", memory }, { "transport", file.transport == Transport::Pci ? "pci" : "mmio" }, { "network_interfaces", nets },
        { "mmds", { { "interfaces", file.mmds.interfaces }, { "v2", file.mmds.v2 }, { "ipv4", file.mmds.ipv4 } } } };
    std::string text = doc.dump();

    std::vector<std::byte> out(snapshot_header_bytes + text.size() + file.machine_state.size());
    std::memcpy(out.data(), snapshot_magic, sizeof snapshot_magic);
    put_le(out, 8, SnapshotFile::format_version, 4);
    put_le(out, 16, text.size(), 8);
    put_le(out, 24, file.machine_state.size(), 8);
    std::memcpy(out.data() + snapshot_header_bytes, text.data(), text.size());
    std::memcpy(out.data() + snapshot_header_bytes + text.size(), file.machine_state.data(), file.machine_state.size());
    // The CRC covers the lengths too (bytes 16..31) and everything after them.
    put_le(out, 12, crc32c(std::span<std::byte const>(out).subspan(16)), 4);
    return out;
}

Result<SnapshotFile> decode_snapshot_file(std::span<std::byte const> bytes)
{
    if (bytes.size() < snapshot_header_bytes || std::memcmp(bytes.data(), snapshot_magic, sizeof snapshot_magic) != 0)
        return bad_snapshot("it does not start with a strata snapshot header");
    auto const version = get_le(bytes, 8, 4);
    if (version != SnapshotFile::format_version)
        return make_error(ErrorKind::Unsupported, "the snapshot file has format version " + std::to_string(version)
                + "; this strata reads version " + std::to_string(SnapshotFile::format_version));
    if (crc32c(bytes.subspan(16)) != get_le(bytes, 12, 4))
        return bad_snapshot("its checksum does not match (the file was changed or truncated)");
    auto const text_len = get_le(bytes, 16, 8);
    auto const state_len = get_le(bytes, 24, 8);
    auto const rest = bytes.size() - snapshot_header_bytes;
    if (text_len > rest || state_len != rest - text_len)
        return bad_snapshot("its lengths do not add up");

    auto doc = json::parse(reinterpret_cast<char const*>(bytes.data() + snapshot_header_bytes),
        reinterpret_cast<char const*>(bytes.data() + snapshot_header_bytes + text_len), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return bad_snapshot("its description is not JSON");
    SnapshotFile file;
    try {
        file.vcpus = doc.at("vcpu_count").get<std::uint32_t>();
        file.memory_mib = doc.at("mem_size_mib").get<std::uint64_t>();
        file.cpu_template = doc.at("cpu_template").get<std::string>() == "minimal" ? CpuTemplate::Minimal : CpuTemplate::Host;
        for (auto const& d : doc.at("drives")) {
            SnapshotDrive drive;
            drive.disk.id = d.at("drive_id").get<std::string>();
            drive.disk.path = d.at("path_on_host").get<std::string>();
            drive.disk.format = d.at("format").get<std::string>();
            drive.disk.read_only = d.at("is_read_only").get<bool>();
            drive.disk.boot = d.at("is_root_device").get<bool>();
            auto const cache = d.at("cache").get<std::string>();
            drive.disk.cache = cache == "writeback" ? DiskCache::Writeback : cache == "unsafe" ? DiskCache::Unsafe : DiskCache::None;
            drive.capture = d.at("capture").get<std::string>();
            if (drive.capture.find('/') != std::string::npos || drive.capture == "." || drive.capture == "..")
                return bad_snapshot("a drive's copy is not a file name");
            // A file written before drives carried their limits has none.
            if (d.contains("rate_limiter")) {
                drive.disk.rate_limit = limiter_from(d.at("rate_limiter"));
                if (auto r = check_rate_limiter(drive.disk.rate_limit); !r)
                    return bad_snapshot("drive '" + drive.disk.id + "': " + r.error().message);
            }
            if (d.contains("rate_limit_group")) {
                drive.disk.rate_limit_group = d.at("rate_limit_group").get<std::string>();
                if (!drive.disk.rate_limit_group.empty() && !valid_rate_limit_group(drive.disk.rate_limit_group))
                    return bad_snapshot("drive '" + drive.disk.id + "' names an invalid rate limit group");
            }
            file.drives.push_back(std::move(drive));
        }
        if (doc.contains("transport")) {
            auto const t = doc.at("transport").get<std::string>();
            if (t != "mmio" && t != "pci")
                return bad_snapshot("unknown transport '" + t + "'");
            file.transport = t == "pci" ? Transport::Pci : Transport::Mmio;
        }
        if (doc.contains("network_interfaces")) {
            for (auto const& n : doc.at("network_interfaces")) {
                NetConfig net;
                net.id = n.at("iface_id").get<std::string>();
                net.tap = n.at("host_dev_name").get<std::string>();
                net.mac = n.at("guest_mac").get<std::string>();
                net.netns_auto = n.at("netns_auto").get<bool>();
                net.rx_limit = limiter_from(n.at("rx_rate_limiter"));
                net.tx_limit = limiter_from(n.at("tx_rate_limiter"));
                file.nets.push_back(std::move(net));
            }
        }
        if (doc.contains("mmds")) {
            auto const& m = doc.at("mmds");
            file.mmds.interfaces = m.at("interfaces").get<std::vector<std::string>>();
            file.mmds.v2 = m.at("v2").get<bool>();
            file.mmds.ipv4 = m.at("ipv4").get<std::uint32_t>();
        }
        for (auto const& m : doc.at("memory")) {
            MemoryLayer layer;
            layer.path = m.at("path").get<std::string>();
            layer.crc = m.at("crc").get<std::uint32_t>();
            layer.diff = m.at("diff").get<bool>();
            for (auto const& r : m.at("runs")) {
                PageRun run { r.at(0).get<std::uint64_t>(), r.at(1).get<std::uint64_t>() };
                layer.runs.push_back(run);
            }
            file.memory.push_back(std::move(layer));
        }
    } catch (json::exception const& e) {
        return bad_snapshot(std::string("its description is incomplete: ") + e.what());
    }
    if (file.memory.empty())
        return bad_snapshot("it names no memory file");
    file.machine_state.assign(bytes.begin() + static_cast<std::ptrdiff_t>(snapshot_header_bytes + text_len), bytes.end());
    return file;
}

std::string snapshot_disk_name(std::filesystem::path const& snapshot, std::string const& id)
{
    return snapshot.filename().string() + ".disk-" + id;
}

Status copy_disk(std::filesystem::path const& from, std::filesystem::path const& to)
{
    int in_raw = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_raw < 0)
        return errno_error("open drive '" + from.string() + "'");
    Fd in(in_raw);
    struct stat st {};
    if (::fstat(in.get(), &st) != 0)
        return errno_error("stat drive '" + from.string() + "'");
    int out_raw = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out_raw < 0)
        return errno_error("create drive copy '" + to.string() + "'");
    Fd out(out_raw);
    auto fail = [&](std::string const& what) {
        Error e = errno_error(what + " '" + to.string() + "'");
        std::error_code ec;
        std::filesystem::remove(to, ec);
        return e;
    };
    // A reflink shares the extents (btrfs, XFS): O(1) whatever the disk's size.
    if (::ioctl(out.get(), FICLONE, in.get()) != 0) {
        if (::ftruncate(out.get(), st.st_size) != 0)
            return fail("size drive copy");
        off_t at = 0;
        while (at < st.st_size) {
            off_t data = ::lseek(in.get(), at, SEEK_DATA);
            if (data < 0) {
                if (errno == ENXIO)
                    break;
                return fail("read drive for");
            }
            off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
            if (hole < 0)
                return fail("read drive for");
            off_t src = data, dst = data;
            while (src < hole) {
                ssize_t n = ::copy_file_range(in.get(), &src, out.get(), &dst, static_cast<std::size_t>(hole - src), 0);
                if (n < 0) {
                    if (errno == EINTR)
                        continue;
                    return fail("copy drive to");
                }
                if (n == 0)
                    break;
            }
            at = hole;
        }
    }
    if (::fsync(out.get()) != 0)
        return fail("sync drive copy");
    return ok();
}

} // namespace strata
