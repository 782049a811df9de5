// Unit tests of build/seqcheck on synthetic disk images: the test writes
// seqwriter records itself (the layout from firmware/README.md) and runs the
// checker as a process, as the kvm tests and the machine-image work do.
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

constexpr uint64_t blocks = 8;

using strata::test::TempDir;

void put64(std::vector<unsigned char>& d, size_t off, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        d[off + static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
}

void put32(std::vector<unsigned char>& d, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        d[off + static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
}

void write_record(std::vector<unsigned char>& disk, uint32_t index, uint64_t round)
{
    size_t base = (round % blocks) * 4096;
    std::fill(disk.begin() + static_cast<long>(base), disk.begin() + static_cast<long>(base + 4096), 0);
    put64(disk, base, 0x3152575145535453ull);
    put32(disk, base + 8, index);
    put32(disk, base + 12, 1);
    put64(disk, base + 16, round);
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < 24; ++i) {
        x ^= disk[base + i];
        x *= 0x100000001b3ull;
    }
    put64(disk, base + 24, x);
    put64(disk, base + 4080, round);
    put64(disk, base + 4088, 0x3152575145535453ull);
}

// A disk as seqwriter leaves it after rounds 0..highest (none: never written).
std::vector<unsigned char> disk_after(uint32_t index, std::optional<uint64_t> highest)
{
    std::vector<unsigned char> d(blocks * 4096 + 65536, 0);
    if (highest)
        for (uint64_t r = 0; r <= *highest; ++r)
            write_record(d, index, r);
    return d;
}

std::string save(TempDir const& dir, std::string const& name, std::vector<unsigned char> const& d)
{
    std::string p = dir.path(name);
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<char const*>(d.data()), static_cast<std::streamsize>(d.size())); // SAFETY: bytes
    return p;
}

strata::test::ProcessResult check(std::vector<std::string> disks)
{
    std::vector<std::string> argv { STRATA_BUILD_DIR "/seqcheck", "--blocks", std::to_string(blocks) };
    argv.insert(argv.end(), disks.begin(), disks.end());
    auto r = strata::test::run_process(argv);
    REQUIRE(r);
    INFO(r.value().out);
    return r.value();
}

} // namespace

TEST_CASE("seqcheck passes disks whose highest rounds are equal or one apart")
{
    TempDir dir;
    auto a = save(dir, "a", disk_after(0, 20));
    auto b = save(dir, "b", disk_after(1, 20));
    auto c = save(dir, "c", disk_after(2, 21));
    auto r = check({ a, b, c });
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("seqcheck: OK") != std::string::npos);
    CHECK(r.out.find("highest round 21") != std::string::npos);
}

TEST_CASE("seqcheck passes fresh disks and disks that have not wrapped yet")
{
    TempDir dir;
    CHECK(check({ save(dir, "a", disk_after(0, std::nullopt)), save(dir, "b", disk_after(1, 0)) }).exit_code == 0);
    CHECK(check({ save(dir, "c", disk_after(0, 3)), save(dir, "d", disk_after(1, 3)) }).exit_code == 0);
}

TEST_CASE("seqcheck fails disks captured at different moments")
{
    TempDir dir;
    auto r = check({ save(dir, "a", disk_after(0, 20)), save(dir, "b", disk_after(1, 22)) });
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("differ by more than 1") != std::string::npos);
    CHECK(check({ save(dir, "c", disk_after(0, std::nullopt)), save(dir, "d", disk_after(1, 1)) }).exit_code == 1);
}

TEST_CASE("seqcheck fails a damaged record")
{
    TempDir dir;
    auto b = save(dir, "b", disk_after(1, 20));
    SUBCASE("bad checksum")
    {
        auto d = disk_after(0, 20);
        d[(17 % blocks) * 4096 + 16] ^= 1; // the round field of round 17, checksum now wrong
        auto r = check({ save(dir, "a", d), b });
        CHECK(r.exit_code == 1);
        CHECK(r.out.find("bad checksum") != std::string::npos);
    }
    SUBCASE("torn write: header of a new round over the tail of an old one")
    {
        auto d = disk_after(0, 20);
        put64(d, (19 % blocks) * 4096 + 4080, 11);
        auto r = check({ save(dir, "a", d), b });
        CHECK(r.exit_code == 1);
        CHECK(r.out.find("torn") != std::string::npos);
    }
    SUBCASE("an earlier round lost")
    {
        auto d2 = disk_after(0, 20); // round 18's block emptied, as if that write never happened
        std::fill(d2.begin() + (18 % blocks) * 4096, d2.begin() + (18 % blocks + 1) * 4096, 0);
        auto r = check({ save(dir, "a", d2), b });
        CHECK(r.exit_code == 1);
        CHECK(r.out.find("round 18") != std::string::npos);
    }
    SUBCASE("garbage")
    {
        auto d = disk_after(0, 20);
        d[3 * 4096 + 100] = 0x55;
        CHECK(check({ save(dir, "a", d), b }).exit_code == 1);
    }
}

TEST_CASE("seqcheck rejects the same disk twice and bad usage")
{
    TempDir dir;
    auto a = save(dir, "a", disk_after(0, 5));
    auto r = check({ a, a });
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("same disk twice") != std::string::npos);
    auto missing = strata::test::run_process({ STRATA_BUILD_DIR "/seqcheck", dir.path("missing") });
    REQUIRE(missing);
    CHECK(missing.value().exit_code == 2);
    std::vector<unsigned char> tiny(100, 0);
    CHECK(check({ save(dir, "tiny", tiny) }).exit_code == 2);
}

TEST_CASE("seqcheck --same-round refuses rounds one apart and passes equal ones")
{
    TempDir dir;
    auto a = save(dir, "a", disk_after(0, 20));
    auto b = save(dir, "b", disk_after(1, 21));
    auto c = save(dir, "c", disk_after(2, 20));
    auto r = check({ "--same-round", a, b });
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("--same-round") != std::string::npos);
    CHECK(check({ "--same-round", a, c }).exit_code == 0);
}

TEST_CASE("seqcheck --min-round refuses disks the guest had not written that far, all-zero ones first")
{
    TempDir dir;
    auto zero_a = save(dir, "za", disk_after(0, std::nullopt));
    auto zero_b = save(dir, "zb", disk_after(1, std::nullopt));
    // All-zero disks are consistent (nothing was written yet)...
    CHECK(check({ zero_a, zero_b }).exit_code == 0);
    // ...but no evidence that a busy guest was captured.
    auto r = check({ "--min-round", "1", zero_a, zero_b });
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("highest round none is below --min-round 1") != std::string::npos);
    auto a = save(dir, "a", disk_after(0, 20));
    auto b = save(dir, "b", disk_after(1, 21));
    CHECK(check({ "--min-round", "20", a, b }).exit_code == 0);
    r = check({ "--min-round", "21", a, b });
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("/a: highest round 20 is below --min-round 21") != std::string::npos);
    CHECK(r.out.find("/b: highest round 21 is below") == std::string::npos);
    CHECK(check({ "--min-round", "x", a, b }).exit_code == 2);
}
