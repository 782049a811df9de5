// Host-side decompression of bzImage payloads: every format the kernel knows,
// produced by the real command-line compressors, plus truncation, unknown magic
// and decompression bombs against the output cap.
#include "tests/vmm/linux_test_util.h"
#include "vmm/boot/linux/decompress.h"

#include <doctest/doctest.h>

using namespace strata;
using namespace strata::linux_boot;
using strata::test::run_filter;

namespace {

std::vector<std::byte> sample(std::size_t size)
{
    // Compressible but not trivial: text-like runs with a slowly changing pattern.
    std::vector<std::byte> d(size);
    std::uint32_t x = 12345;
    for (std::size_t i = 0; i < size; ++i) {
        if (i % 64 == 0)
            x = x * 1103515245 + 12345;
        d[i] = static_cast<std::byte>('a' + ((x >> 16) + i % 7) % 26);
    }
    return d;
}

struct Tool {
    Compression format;
    char const* command;
};

// The commands the kernel's build uses for each format (scripts/Makefile.lib),
// at faster levels.
Tool const tools[] = {
    { Compression::Gzip, "gzip -n -1 -c" },
    { Compression::Bzip2, "bzip2 -1 -c" },
    { Compression::Lzma, "xz --format=lzma -0 -c" },
    { Compression::Xz, "xz --check=crc32 --x86 --lzma2=preset=1 -c" },
    { Compression::Lzo, "busybox lzop -c" },
    { Compression::Lz4, "lz4 -l -1 -c" },
    { Compression::Zstd, "zstd -3 -q -c" },
};

void append_size(std::vector<std::byte>& c, std::uint32_t size)
{
    for (int i = 0; i < 4; ++i)
        c.push_back(static_cast<std::byte>(size >> (8 * i)));
}

} // namespace

TEST_CASE("every kernel compression format round-trips, ignoring the size trailer")
{
    // 9 MiB makes lz4's legacy frame use two chunks (8 MiB each at most).
    auto data = sample(9 << 20);
    for (auto const& t : tools) {
        CAPTURE(compression_name(t.format));
        auto c = run_filter(t.command, data);
        REQUIRE(!c.empty());
        CHECK(detect_compression(c) == t.format);
        append_size(c, static_cast<std::uint32_t>(data.size()));
        auto out = decompress(c);
        STRATA_REQUIRE_OK(out);
        CHECK(out.value().size() == data.size());
        CHECK(out.value() == data);
    }
}

TEST_CASE("the size trailer only sizes the buffer: a wrong one still yields the whole, exact output")
{
    // The buffer is sized from the trailer once; a trailer that says too little
    // (or too much, or more than the cap) must change nothing but the growth.
    auto data = sample(9 << 20);
    for (auto const& t : tools) {
        CAPTURE(compression_name(t.format));
        auto c = run_filter(t.command, data);
        for (std::uint32_t said : { 0u, 4096u, static_cast<std::uint32_t>(data.size() - 1),
                 static_cast<std::uint32_t>(data.size() * 3), 0xffffffffu }) {
            CAPTURE(said);
            auto with = c;
            append_size(with, said);
            auto out = decompress(with);
            STRATA_REQUIRE_OK(out);
            CHECK(out.value().size() == data.size());
            CHECK(out.value() == data);
        }
        // Under a cap below the real size, the trailer cannot lift the cap.
        auto capped = c;
        append_size(capped, static_cast<std::uint32_t>(data.size()));
        CHECK(!decompress(capped, data.size() / 2).has_value());
    }
}

TEST_CASE("lz4: chunks inflated at once land in order, a short chunk before the last still gives the exact output")
{
    // 27 MiB: four chunks (8, 8, 8, 3), inflated in parallel, each to its place.
    auto data = sample(27 << 20);
    auto c = run_filter("lz4 -l -1 -c", data);
    append_size(c, static_cast<std::uint32_t>(data.size()));
    auto out = decompress(c);
    STRATA_REQUIRE_OK(out);
    CHECK(out.value() == data);

    // Two legacy streams back to back (the kernel's decompressor accepts that): the
    // first ends in a 5 MiB chunk, so the chunks are not all 8 MiB and they must be
    // inflated one after another.
    auto first = sample(5 << 20);
    auto second = sample(9 << 20);
    auto c1 = run_filter("lz4 -l -1 -c", first);
    auto c2 = run_filter("lz4 -l -1 -c", second);
    c1.insert(c1.end(), c2.begin(), c2.end());
    append_size(c1, static_cast<std::uint32_t>(first.size() + second.size()));
    auto both = decompress(c1);
    STRATA_REQUIRE_OK(both);
    REQUIRE(both.value().size() == first.size() + second.size());
    CHECK(std::equal(first.begin(), first.end(), both.value().begin()));
    CHECK(std::equal(second.begin(), second.end(), both.value().begin() + static_cast<std::ptrdiff_t>(first.size())));
}

TEST_CASE("truncated payloads are errors, not short kernels")
{
    auto data = sample(1 << 20);
    for (auto const& t : tools) {
        CAPTURE(compression_name(t.format));
        auto c = run_filter(t.command, data);
        REQUIRE(c.size() > 64);
        c.resize(c.size() / 2);
        auto out = decompress(c);
        CHECK(!out.has_value());
        if (!out)
            CHECK(out.error().kind == ErrorKind::BadInput);
    }
}

TEST_CASE("corrupt payloads are rejected")
{
    auto data = sample(1 << 20);
    for (auto const& t : tools) {
        CAPTURE(compression_name(t.format));
        auto c = run_filter(t.command, data);
        REQUIRE(c.size() > 256);
        // Flip bytes in the middle of the stream, away from the headers.
        for (std::size_t i = c.size() / 3; i < c.size() / 3 + 64; ++i)
            c[i] = ~c[i];
        auto out = decompress(c);
        // Formats without a checksum may decode garbage of the right length, but
        // never succeed with the original bytes.
        CHECK((!out.has_value() || out.value() != data));
    }
}

TEST_CASE("decompression bombs stop at the output cap")
{
    std::vector<std::byte> zeros(64 << 20, std::byte { 0 });
    for (auto const& t : tools) {
        CAPTURE(compression_name(t.format));
        auto c = run_filter(t.command, zeros);
        REQUIRE(!c.empty());
        CHECK(c.size() < (4 << 20));
        auto out = decompress(c, 8 << 20);
        REQUIRE(!out.has_value());
        CHECK(out.error().kind == ErrorKind::BadInput);
        CHECK(out.error().message.find("limit") != std::string::npos);
        // The same stream passes under a cap that fits it.
        auto fits = decompress(c, 64 << 20);
        REQUIRE(fits.has_value());
        CHECK(fits.value().size() == zeros.size());
    }
}

TEST_CASE("unknown formats and uncompressed ELF payloads")
{
    std::vector<std::byte> junk(100, std::byte { 0x42 });
    CHECK(detect_compression(junk) == Compression::Unknown);
    auto r = decompress(junk);
    REQUIRE(!r.has_value());
    CHECK(r.error().kind == ErrorKind::Unsupported);

    std::vector<std::byte> elf { std::byte { 0x7f }, std::byte { 'E' }, std::byte { 'L' }, std::byte { 'F' }, std::byte { 2 } };
    CHECK(detect_compression(elf) == Compression::Uncompressed);
    auto copy = decompress(elf);
    REQUIRE(copy.has_value());
    CHECK(copy.value() == elf);
    CHECK(!decompress(elf, 2).has_value());
    CHECK(detect_compression({}) == Compression::Unknown);
}
