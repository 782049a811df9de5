// export_qcow2 against real qemu-img: every exported file must pass `qemu-img
// check` and `qemu-img compare` with its source, for raw and qcow2 sources, odd
// sizes, several L2 tables and several refcount blocks.
#include "imaging/qcow2/qcow2_reader.h"
#include "imaging/qcow2/qcow2_writer.h"
#include "imaging/raw_backend.h"
#include "tests/support/shell.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace strata;
using strata::test::sh;
using strata::test::TempDir;

namespace {

void export_raw(std::string const& raw, std::string const& out, Qcow2WriteOptions const& options = {})
{
    RawOptions ro;
    ro.writable = false;
    ro.engine = EngineKind::Sync;
    auto backend = RawBackend::open(raw, ro);
    REQUIRE_MESSAGE(backend, (backend ? "" : backend.error().message));
    int fd = ::open(raw.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    auto size = static_cast<std::uint64_t>(st.st_size);
    CopySource source { backend.value().get(), [fd, size](std::uint64_t off, std::uint64_t max) {
                           return file_block_status(fd, size, off, max);
                       } };
    std::uint64_t last = 0;
    auto status = export_qcow2(source, out, options, [&](std::uint64_t done, std::uint64_t) { last = done; });
    ::close(fd);
    REQUIRE_MESSAGE(status, (status ? "" : status.error().message));
    CHECK(last == backend.value()->size());
}

void expect_clean_and_identical(std::string const& source, char const* source_format, std::string const& exported)
{
    CHECK(sh("qemu-img check -f qcow2 '" + exported + "'") == 0);
    CHECK(sh(std::string("qemu-img compare -f ") + source_format + " -F qcow2 '" + source + "' '" + exported + "'") == 0);
}

} // namespace

TEST_CASE("qcow2 export of a raw file is clean and identical")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 12);
    export_raw(raw, dir / "out.qcow2");
    expect_clean_and_identical(raw, "raw", dir / "out.qcow2");
    // Zero clusters are not stored: the export is smaller than the data span.
    struct stat st {};
    REQUIRE(::stat((dir / "out.qcow2").c_str(), &st) == 0);
    CHECK(static_cast<std::uint64_t>(st.st_size) < (12ULL << 20));
}

TEST_CASE("qcow2 export with small clusters needs several refcount blocks and L2 tables")
{
    TempDir dir;
    std::string raw = dir / "src.raw";
    strata::test::make_pattern_image(raw, 12);
    Qcow2WriteOptions options;
    options.cluster_bits = 12;
    export_raw(raw, dir / "out4k.qcow2", options);
    expect_clean_and_identical(raw, "raw", dir / "out4k.qcow2");
}

TEST_CASE("qcow2 export of a large sparse disk with an odd size")
{
    TempDir dir;
    std::string raw = dir / "sparse.raw";
    // 1.5 GiB + 512 bytes: three L2 tables' worth of range, data in each, a partial last cluster.
    REQUIRE(sh("truncate -s 1610613248 '" + raw + "'") == 0);
    for (char const* seek : { "0", "700000", "1572863" })
        REQUIRE(sh("dd if=/dev/urandom of='" + raw + "' bs=1k count=1 seek=" + std::string(seek) + " conv=notrunc") == 0);
    export_raw(raw, dir / "sparse.qcow2");
    expect_clean_and_identical(raw, "raw", dir / "sparse.qcow2");
}

TEST_CASE("qcow2 export of a compressed qcow2 chain is identical to the chain")
{
    TempDir dir;
    std::string raw = dir / "base.raw";
    strata::test::make_pattern_image(raw, 8);
    REQUIRE(sh("qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd '" + raw + "' '" + (dir / "base.qcow2") + "'") == 0);
    REQUIRE(sh("cd '" + dir.path() + "' && qemu-img create -f qcow2 -o extended_l2=on -b base.qcow2 -F qcow2 top.qcow2") == 0);
    REQUIRE(sh("qemu-io -c 'write -P 0x61 4k 4k' -c 'write -z 2M 1M' '" + (dir / "top.qcow2") + "'") == 0);
    auto reader = Qcow2Reader::open(dir / "top.qcow2");
    REQUIRE(reader);
    Qcow2Reader* r = reader.value().get();
    CopySource source { r, [r](std::uint64_t off, std::uint64_t max) { return r->block_status(off, max); } };
    auto status = export_qcow2(source, dir / "flat.qcow2");
    REQUIRE_MESSAGE(status, (status ? "" : status.error().message));
    expect_clean_and_identical(dir / "top.qcow2", "qcow2", dir / "flat.qcow2");
    // The exported file is standalone.
    CHECK(sh("qemu-img info '" + (dir / "flat.qcow2") + "' | grep -q 'backing file'") != 0);
}
