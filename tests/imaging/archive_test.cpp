// The portable archive: round trips of disks (one and several layers) and blobs,
// zero chunks not stored, and one flipped byte anywhere in the file caught.
#include "imaging/archive/archive_reader.h"
#include "imaging/archive/archive_writer.h"
#include "imaging/raw_backend.h"
#include "tests/support/shell.h"

#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

using namespace strata;
using strata::test::sh;
using strata::test::slurp;
using strata::test::TempDir;

namespace {

// An in-memory layer: data blocks, zero blocks and unmapped blocks of 4 KiB.
struct MemLayer {
    std::uint64_t size;
    std::map<std::uint64_t, std::vector<std::byte>> data; // block -> bytes
    std::map<std::uint64_t, bool> zero;                   // block -> zero

    LayerInput input(std::string id) const
    {
        LayerInput in;
        in.id = std::move(id);
        in.size = size;
        in.read = [this](std::uint64_t off, std::span<std::byte> out) -> Status {
            for (std::size_t i = 0; i < out.size(); i += 4096)
                std::copy_n(data.at((off + i) / 4096).begin(), 4096, out.begin() + static_cast<std::ptrdiff_t>(i));
            return ok();
        };
        in.status = [this](std::uint64_t off, std::uint64_t max) -> Result<LayerRange> {
            auto kind_of = [this](std::uint64_t b) {
                return data.count(b) ? LayerRangeKind::Data : zero.count(b) ? LayerRangeKind::Zero : LayerRangeKind::Unmapped;
            };
            auto k = kind_of(off / 4096);
            std::uint64_t n = 4096;
            while (n < max && kind_of((off + n) / 4096) == k)
                n += 4096;
            return LayerRange { k, std::min(n, max) };
        };
        return in;
    }
};

std::vector<std::byte> block_of(int value)
{
    return std::vector<std::byte>(4096, static_cast<std::byte>(value));
}

void write_raw_archive(std::string const& raw, std::string const& out, ArchiveOptions const& options = {})
{
    RawOptions ro;
    ro.writable = false;
    ro.engine = EngineKind::Sync;
    auto backend = RawBackend::open(raw, ro);
    REQUIRE(backend);
    auto writer = ArchiveWriter::create(out, options);
    REQUIRE(writer);
    CopySource source { backend.value().get(), {} };
    REQUIRE(writer.value()->add_disk("disk", { layer_input_from(source, "layer-a") }));
    std::string blob = "kernel bytes";
    // SAFETY: the string's bytes, viewed as bytes.
    REQUIRE(writer.value()->add_blob("kernel", std::span(reinterpret_cast<std::byte const*>(blob.data()), blob.size())));
    REQUIRE(writer.value()->finish({ { "kind", "image" }, { "name", "test" } }));
}

// Reads the disk entry back into a flat image.
Status read_disk(std::string const& archive_path, std::vector<std::byte>& out)
{
    STRATA_TRY(reader, ArchiveReader::open(archive_path));
    STRATA_TRY(reader->verify());
    auto const* disk = reader->find("disk");
    REQUIRE(disk != nullptr);
    out.assign(disk->size, std::byte { 0 });
    for (auto const& layer : disk->layers) {
        STRATA_TRY(reader->read_layer(
            layer,
            [&](std::uint64_t off, std::span<std::byte const> data) -> Status {
                std::copy(data.begin(), data.end(), out.begin() + static_cast<std::ptrdiff_t>(off));
                return ok();
            },
            [&](std::uint64_t off, std::uint64_t len) -> Status {
                std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(off), len, std::byte { 0 });
                return ok();
            }));
    }
    return ok();
}

} // namespace

TEST_CASE("archive: a raw disk and a blob round trip, zero chunks are not stored")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 16);
    ArchiveOptions options;
    options.chunk_size = 1 << 20;
    write_raw_archive(raw, dir / "a.strata-archive", options);
    std::vector<std::byte> back;
    auto status = read_disk(dir / "a.strata-archive", back);
    REQUIRE_MESSAGE(status, (status ? "" : status.error().message));
    CHECK(back == slurp(raw));

    auto reader = ArchiveReader::open(dir / "a.strata-archive");
    REQUIRE(reader);
    auto const& m = reader.value()->manifest();
    CHECK(m.metadata["kind"] == "image");
    auto const* disk = reader.value()->find("disk");
    REQUIRE(disk);
    // MiB 15 (and 2, 5, ...) hold no data: fewer chunks than MiB.
    CHECK(disk->layers.at(0).chunks.size() < 16);
    std::string blob;
    auto const* kernel = reader.value()->find("kernel");
    REQUIRE(kernel);
    REQUIRE(reader.value()->read_blob(*kernel, [&](std::uint64_t, std::span<std::byte const> d) -> Status {
        // SAFETY: bytes viewed as chars for comparison.
        blob.append(reinterpret_cast<char const*>(d.data()), d.size());
        return ok();
    }));
    CHECK(blob == "kernel bytes");
}

TEST_CASE("archive: a chain of layers keeps data, zero ranges and holes apart")
{
    TempDir dir;
    MemLayer bottom { 64 * 4096, {}, {} };
    for (std::uint64_t b = 0; b < 40; ++b)
        bottom.data[b] = block_of(0x10 + static_cast<int>(b));
    MemLayer top { 80 * 4096, {}, {} };
    top.data[3] = block_of(0xee);
    top.data[70] = block_of(0xdd);
    top.data[5] = block_of(0); // zero data: stored as a zero range
    for (std::uint64_t b = 10; b < 20; ++b)
        top.zero[b] = true;
    auto writer = ArchiveWriter::create(dir / "chain.arc", ArchiveOptions { 1, 16384, 2 });
    REQUIRE(writer);
    REQUIRE(writer.value()->add_disk("disk", { bottom.input("b"), top.input("t") }));
    REQUIRE(writer.value()->finish(nlohmann::json::object()));

    auto reader = ArchiveReader::open(dir / "chain.arc");
    REQUIRE(reader);
    auto const* disk = reader.value()->find("disk");
    REQUIRE(disk);
    REQUIRE(disk->layers.size() == 2);
    CHECK(disk->size == 80 * 4096);
    auto const& t = disk->layers[1];
    CHECK(t.chunks.size() == 2);
    REQUIRE(t.zeros.size() == 2);
    CHECK(t.zeros[0].offset == 5 * 4096);
    CHECK(t.zeros[1].offset == 10 * 4096);
    CHECK(t.zeros[1].length == 10 * 4096);
    std::vector<std::byte> flat;
    REQUIRE(read_disk(dir / "chain.arc", flat));
    CHECK(flat[3 * 4096] == std::byte { 0xee });
    CHECK(flat[4 * 4096] == std::byte { 0x14 });
    CHECK(flat[5 * 4096] == std::byte { 0 });
    CHECK(flat[12 * 4096] == std::byte { 0 });
    CHECK(flat[25 * 4096] == std::byte { 0x10 + 25 });
    CHECK(flat[70 * 4096] == std::byte { 0xdd });
}

TEST_CASE("archive: one flipped byte anywhere is a clear error")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 4);
    std::string good = dir / "good.arc";
    write_raw_archive(raw, good);
    auto size = slurp(good).size();
    // Header, the first chunk, the middle, the manifest, the trailer's digest.
    for (std::uint64_t at : { std::uint64_t { 3 }, std::uint64_t { 100 }, size / 2, size - 200, size - 10 }) {
        CAPTURE(at);
        std::string bad = dir / "bad.arc";
        REQUIRE(sh("cp '" + good + "' '" + bad + "'") == 0);
        int fd = ::open(bad.c_str(), O_RDWR);
        REQUIRE(fd >= 0);
        unsigned char b = 0;
        REQUIRE(::pread(fd, &b, 1, static_cast<off_t>(at)) == 1);
        b ^= 0x01;
        REQUIRE(::pwrite(fd, &b, 1, static_cast<off_t>(at)) == 1);
        ::close(fd);
        std::vector<std::byte> back;
        auto status = read_disk(bad, back);
        REQUIRE(!status);
        CHECK(status.error().kind != ErrorKind::Internal);
        MESSAGE(status.error().message);
    }
    // Truncation.
    REQUIRE(sh("truncate -s " + std::to_string(size - 1) + " '" + good + "'") == 0);
    std::vector<std::byte> back;
    CHECK(!read_disk(good, back));
}
