// Qcow2Reader against real files made by qemu-img and qemu-io: every byte is
// compared with what `qemu-img convert -O raw` makes of the same file. Then
// hostile files: truncated, out-of-range offsets, huge tables, backing loops and
// escapes, corrupted compressed data.
#include "imaging/qcow2/qcow2_format.h"
#include "imaging/qcow2/qcow2_reader.h"
#include "tests/support/shell.h"

#include <fcntl.h>
#include <unistd.h>

using namespace strata;
using strata::test::sh;
using strata::test::slurp;
using strata::test::TempDir;

namespace {

std::vector<std::byte> read_all(Qcow2Reader& r)
{
    std::vector<std::byte> out(r.size());
    // Odd-sized chunks so reads straddle clusters and subclusters.
    std::size_t const step = 3 * 4096 + 512;
    for (std::size_t pos = 0; pos < out.size(); pos += step) {
        std::size_t n = std::min(step, out.size() - pos);
        auto status = r.read(pos, std::span(out).subspan(pos, n));
        REQUIRE_MESSAGE(status, (status ? "" : status.error().message));
    }
    return out;
}

// Opens path with strata's reader and compares it with qemu-img's raw conversion.
void expect_same_as_qemu(std::string const& path, Qcow2OpenOptions const& options = {})
{
    std::string raw = path + ".qemu.raw";
    REQUIRE(sh("qemu-img convert -O raw '" + path + "' '" + raw + "'") == 0);
    auto reader = Qcow2Reader::open(path, options);
    REQUIRE_MESSAGE(reader, (reader ? "" : reader.error().message));
    auto ours = read_all(*reader.value());
    auto theirs = slurp(raw);
    REQUIRE(ours.size() == theirs.size());
    CHECK(ours == theirs);
    // Through the BlockBackend interface too.
    std::vector<std::byte> head(65536);
    REQUIRE(read_sync(*reader.value(), 0, head));
    CHECK(std::equal(head.begin(), head.end(), theirs.begin()));
}

void patch_be64(std::string const& path, off_t offset, std::uint64_t value)
{
    std::byte b[8];
    qcow2::store_be64(b, value);
    int fd = ::open(path.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, b, 8, offset) == 8);
    ::close(fd);
}

void patch_be32(std::string const& path, off_t offset, std::uint32_t value)
{
    std::byte b[4];
    qcow2::store_be32(b, value);
    int fd = ::open(path.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, b, 4, offset) == 4);
    ::close(fd);
}

ErrorKind open_error(std::string const& path)
{
    auto r = Qcow2Reader::open(path);
    REQUIRE(!r);
    MESSAGE(r.error().message);
    return r.error().kind;
}

} // namespace

TEST_CASE("qcow2 reader: v2 v3 zlib zstd and extended L2 images read as qemu-img reads them")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 12);
    struct Case {
        char const* name;
        char const* opts;
    } cases[] = {
        { "v2.qcow2", "-o compat=0.10" },
        { "v3.qcow2", "-o compat=1.1" },
        { "v3-small-clusters.qcow2", "-o cluster_size=4096" },
        { "zlib.qcow2", "-c" },
        { "zstd.qcow2", "-c -o compression_type=zstd" },
        { "extl2.qcow2", "-o extended_l2=on" },
        { "extl2-zstd.qcow2", "-c -o extended_l2=on,compression_type=zstd" },
    };
    for (auto const& c : cases) {
        CAPTURE(c.name);
        std::string path = dir / c.name;
        REQUIRE(sh(std::string("qemu-img convert -f raw -O qcow2 ") + c.opts + " '" + raw + "' '" + path + "'") == 0);
        expect_same_as_qemu(path);
    }
}

TEST_CASE("qcow2 reader: backing chains with zero writes, discards and subclusters")
{
    TempDir dir;
    std::string raw = dir / "base.raw";
    strata::test::make_pattern_image(raw, 8);
    REQUIRE(sh("qemu-img convert -f raw -O qcow2 -c '" + raw + "' '" + (dir / "base.qcow2") + "'") == 0);
    // A v3 overlay with writes, zero writes and an unaligned overwrite.
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2") == 0);
    REQUIRE(sh("qemu-io -c 'write -P 0x55 4k 8k' -c 'write -z 1M 128k' -c 'write -P 0x11 3M 1536' '" + (dir / "mid.qcow2") + "'") == 0);
    // An extended-L2 overlay over it, one larger than its backing.
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 -o extended_l2=on -b mid.qcow2 -F qcow2 top.qcow2 10M") == 0);
    REQUIRE(sh("qemu-io -c 'write -P 0x77 2k 2k' -c 'write -z 64k 4k' -c 'discard 5M 64k' -c 'write -P 0x99 9M 4k' '"
               + (dir / "top.qcow2") + "'") == 0);
    expect_same_as_qemu(dir / "mid.qcow2");
    expect_same_as_qemu(dir / "top.qcow2");
    auto top = Qcow2Reader::open(dir / "top.qcow2");
    REQUIRE(top);
    CHECK(top.value()->chain_depth() == 3);
    // Block status: the tail past the base reads as zeros, the start holds data.
    auto head = top.value()->block_status(0, 65536);
    REQUIRE(head);
    CHECK(head.value().kind == RangeKind::Data);
    auto tail = top.value()->block_status(8 << 20, 1 << 20);
    REQUIRE(tail);
    CHECK(tail.value().kind == RangeKind::Zero);

    // A raw backing file.
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 -b base.raw -F raw over-raw.qcow2") == 0);
    REQUIRE(sh("qemu-io -c 'write -P 0x42 100k 4k' '" + (dir / "over-raw.qcow2") + "'") == 0);
    expect_same_as_qemu(dir / "over-raw.qcow2");
}

TEST_CASE("qcow2 reader: backing files outside the image's directory are refused unless passed explicitly")
{
    TempDir dir;
    REQUIRE(sh("mkdir '" + (dir / "images") + "'") == 0);
    REQUIRE(sh("qemu-img create -f qcow2 '" + (dir / "outside.qcow2") + "' 1M") == 0);
    REQUIRE(sh("qemu-io -c 'write -P 0x33 0 64k' '" + (dir / "outside.qcow2") + "'") == 0);
    std::string top = dir / "images/top.qcow2";
    REQUIRE(sh("qemu-img create -f qcow2 -b '" + (dir / "outside.qcow2") + "' -F qcow2 '" + top + "'") == 0);
    CHECK(open_error(top) == ErrorKind::Permission);
    std::string rel = dir / "images/rel.qcow2";
    REQUIRE(sh("cd '" + (dir / "images") + "' && qemu-img create -f qcow2 -b ../outside.qcow2 -F qcow2 rel.qcow2") == 0);
    CHECK(open_error(rel) == ErrorKind::Permission);
    // The user's explicit choice is honoured.
    Qcow2OpenOptions options;
    options.backing = dir / "outside.qcow2";
    expect_same_as_qemu(top, options);
}

TEST_CASE("qcow2 reader: backing loops and missing backing files are clear errors")
{
    TempDir dir;
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 a.qcow2 1M && qemu-img create -f qcow2 -b a.qcow2 -F qcow2 b.qcow2"
               " && qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2") == 0);
    CHECK(open_error(dir / "b.qcow2") == ErrorKind::BadInput);
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 self.qcow2 1M && qemu-img rebase -u -b self.qcow2 -F qcow2 self.qcow2") == 0);
    CHECK(open_error(dir / "self.qcow2") == ErrorKind::BadInput);
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 -u -b nothing.qcow2 -F qcow2 gone.qcow2 1M") == 0);
    CHECK(open_error(dir / "gone.qcow2") == ErrorKind::NotFound);
}

TEST_CASE("qcow2 reader: hostile headers and tables give errors, not crashes")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 4);
    std::string good = dir / "good.qcow2";
    REQUIRE(sh("qemu-img convert -f raw -O qcow2 '" + raw + "' '" + good + "'") == 0);
    auto copy = [&](char const* name) {
        std::string p = dir / name;
        REQUIRE(sh("cp '" + good + "' '" + p + "'") == 0);
        return p;
    };
    SUBCASE("truncated to the header") {
        std::string p = copy("trunc.qcow2");
        REQUIRE(sh("truncate -s 100 '" + p + "'") == 0);
        CHECK(open_error(p) == ErrorKind::BadInput);
    }
    SUBCASE("truncated inside the data") {
        std::string p = copy("trunc2.qcow2");
        REQUIRE(sh("truncate -s 400K '" + p + "'") == 0);
        auto r = Qcow2Reader::open(p);
        if (r) {
            std::vector<std::byte> all(r.value()->size());
            auto status = r.value()->read(0, all);
            REQUIRE(!status);
            CHECK(status.error().kind == ErrorKind::BadInput);
        }
    }
    SUBCASE("huge virtual size and L1 size") {
        std::string p = copy("huge.qcow2");
        patch_be64(p, 24, 1ULL << 62);
        CHECK(open_error(p) == ErrorKind::BadInput);
        p = copy("hugel1.qcow2");
        patch_be64(p, 24, 1ULL << 54);
        patch_be32(p, 36, 0x7fffffff);
        CHECK(open_error(p) == ErrorKind::BadInput);
    }
    SUBCASE("L1 table past the end of the file or over the header") {
        std::string p = copy("l1eof.qcow2");
        patch_be64(p, 40, 1ULL << 40);
        CHECK(open_error(p) == ErrorKind::BadInput);
        p = copy("l1hdr.qcow2");
        patch_be64(p, 40, 0);
        CHECK(open_error(p) == ErrorKind::BadInput);
    }
    SUBCASE("L2 entries past the end of the file or overlapping the L1 table") {
        auto r0 = Qcow2Reader::open(good);
        REQUIRE(r0);
        std::uint64_t l1 = r0.value()->header().l1_table_offset;
        std::string p = copy("l2eof.qcow2");
        patch_be64(p, static_cast<off_t>(l1), qcow2::kCopied | (1ULL << 45));
        auto r = Qcow2Reader::open(p);
        REQUIRE(r);
        std::vector<std::byte> buf(4096);
        auto status = r.value()->read(0, buf);
        REQUIRE(!status);
        CHECK(status.error().kind == ErrorKind::BadInput);
        p = copy("l2l1.qcow2");
        patch_be64(p, static_cast<off_t>(l1), qcow2::kCopied | l1);
        r = Qcow2Reader::open(p);
        REQUIRE(r);
        CHECK(!r.value()->read(0, buf));
    }
    SUBCASE("bad compression type and unknown feature bits") {
        std::string p = copy("feat.qcow2");
        patch_be64(p, 72, 1ULL << 40);
        CHECK(open_error(p) == ErrorKind::Unsupported);
        p = copy("bits.qcow2");
        patch_be32(p, 20, 40);
        CHECK(open_error(p) == ErrorKind::BadInput);
    }
}

TEST_CASE("qcow2 reader: corrupted compressed clusters give errors")
{
    TempDir dir;
    // Text only, so that every cluster is stored compressed.
    std::string raw = dir / "src.raw";
    REQUIRE(sh("seq 1 700000 > '" + raw + "' && truncate -s 4M '" + raw + "'") == 0);
    for (char const* type : { "zlib", "zstd" }) {
        CAPTURE(type);
        std::string p = dir / (std::string(type) + ".qcow2");
        REQUIRE(sh("qemu-img convert -f raw -O qcow2 -c -o compression_type=" + std::string(type) + " '" + raw + "' '" + p + "'") == 0);
        // Overwrite the middle of the file (compressed data) with garbage.
        auto size = slurp(p).size();
        REQUIRE(sh("dd if=/dev/urandom of='" + p + "' bs=1 count=4096 seek=" + std::to_string(size / 2) + " conv=notrunc") == 0);
        auto r = Qcow2Reader::open(p);
        REQUIRE(r);
        std::vector<std::byte> all(r.value()->size());
        bool failed = false;
        for (std::size_t pos = 0; pos < all.size(); pos += 65536) {
            auto status = r.value()->read(pos, std::span(all).subspan(pos, 65536));
            if (!status) {
                CHECK(status.error().kind == ErrorKind::BadInput);
                failed = true;
            }
        }
        CHECK(failed);
    }
}
