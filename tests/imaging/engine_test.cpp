// Tests for the io_uring and synchronous engines and the raw backend, on real
// files with a real ring.
#include "imaging/raw_backend.h"
#include "imaging/io/sync_engine.h"
#include "imaging/io/uring_engine.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace strata;

static std::vector<std::byte> pattern(std::size_t n, unsigned seed)
{
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::byte>((i * 131 + seed * 7 + (i >> 9)) & 0xff);
    return v;
}

static void make_file(std::string const& path, std::uint64_t size)
{
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
    ::close(fd);
}

TEST_CASE("engines: batched reads and writes through both engines, with unaligned buffers")
{
    test::TempDir dir;
    for (EngineKind kind : { EngineKind::Uring, EngineKind::Sync }) {
        std::string path = dir.path(kind == EngineKind::Uring ? "u.img" : "s.img");
        make_file(path, 1 << 20);
        auto file = open_for_io(path, O_RDWR, CacheMode::None);
        REQUIRE(file);
        auto engine = make_engine(kind, 4);
        REQUIRE(engine);
        auto& e = *engine.value();
        auto id = e.add_file(file.value().fd.get(), file.value().info);
        REQUIRE(id);
        // 16 writes with a cap of 4: the rest wait in the software queue.
        std::vector<std::vector<std::byte>> bufs;
        std::vector<std::byte> raw(16 * 4096 + 1);
        std::vector<iovec> iovs(16);
        for (unsigned i = 0; i < 16; ++i) {
            bufs.push_back(pattern(4096, i));
            // Deliberately misaligned by one byte: the engine must bounce it.
            std::memcpy(raw.data() + 1 + i * 4096, bufs[i].data(), 4096);
            iovs[i] = iovec { raw.data() + 1 + i * 4096, 4096 };
            e.submit(IoRequest { IoOp::Write, id.value(), i * 65536ull, 4096, { &iovs[i], 1 }, 0, i });
        }
        REQUIRE(e.kick());
        std::map<std::uint64_t, int> done;
        while (done.size() < 16)
            e.reap([&](IoCompletion const& c) { done[c.token] = c.res; }, true);
        for (auto const& [token, res] : done)
            CHECK(res == 0);
        CHECK(e.outstanding() == 0);
        REQUIRE(fdatasync_sync(e, id.value()));
        for (unsigned i = 0; i < 16; ++i) {
            std::vector<std::byte> back(4096);
            REQUIRE(read_sync(e, id.value(), i * 65536ull, back));
            CHECK(back == bufs[i]);
        }
        // Reading past the end of the file is an error, not a silent short read.
        std::vector<std::byte> past(4096);
        auto r = read_sync(e, id.value(), 1 << 20, past);
        CHECK(!r);
    }
}

TEST_CASE("engines: completion_fd becomes readable when a completion waits")
{
    test::TempDir dir;
    std::string path = dir.path("f.img");
    make_file(path, 65536);
    auto file = open_for_io(path, O_RDWR, CacheMode::None);
    REQUIRE(file);
    auto engine = UringEngine::create(8);
    REQUIRE(engine);
    auto& e = *engine.value();
    auto id = e.add_file(file.value().fd.get(), file.value().info);
    REQUIRE(id);
    e.submit(IoRequest { IoOp::Fdatasync, id.value(), 0, 0, {}, 0, 7 });
    REQUIRE(e.kick());
    std::uint64_t v = 0;
    // Block on the eventfd itself, as a device I/O thread would with epoll.
    int flags = ::fcntl(e.completion_fd(), F_GETFL);
    ::fcntl(e.completion_fd(), F_SETFL, flags & ~O_NONBLOCK);
    CHECK(::read(e.completion_fd(), &v, sizeof v) == sizeof v);
    ::fcntl(e.completion_fd(), F_SETFL, flags);
    int res = -1;
    e.reap([&](IoCompletion const& c) { res = c.token == 7 ? c.res : -1; }, true);
    CHECK(res == 0);
}

TEST_CASE("raw backend: read, write, flush, discard, write-zeroes, read-only")
{
    test::TempDir dir;
    std::string path = dir.path("raw.img");
    make_file(path, 4 << 20);
    auto backend = RawBackend::open(path);
    REQUIRE(backend);
    auto& b = *backend.value();
    CHECK(b.size() == (4u << 20));
    auto data = pattern(3 * 512, 3);
    REQUIRE(write_sync(b, 512, data)); // a 512-byte aligned, not 4 KiB aligned write
    REQUIRE(flush_sync(b));
    std::vector<std::byte> back(3 * 512);
    REQUIRE(read_sync(b, 512, back));
    CHECK(back == data);
    auto big = pattern(65536, 9);
    REQUIRE(write_sync(b, 65536, big));
    REQUIRE(discard_sync(b, 65536, 32768));
    REQUIRE(write_zeroes_sync(b, 65536 + 32768, 4096));
    std::vector<std::byte> out(65536);
    REQUIRE(read_sync(b, 65536, out));
    for (std::size_t i = 0; i < 65536; ++i) {
        std::byte want = i < 32768 + 4096 ? std::byte { 0 } : big[i];
        if (out[i] != want) {
            FAIL("mismatch at " << i);
        }
    }
    // Out-of-range and misaligned requests are refused at submit.
    iovec iov { out.data(), 512 };
    CHECK(!b.submit(BlockRequest { BlockOp::Read, b.size(), 512, { &iov, 1 }, 1 }));
    CHECK(!b.submit(BlockRequest { BlockOp::Read, 100, 512, { &iov, 1 }, 1 }));

    auto ro = RawBackend::open(path, RawOptions { .writable = false });
    REQUIRE(ro);
    CHECK(ro.value()->read_only());
    auto w = write_sync(*ro.value(), 0, data);
    REQUIRE(!w);
    CHECK(w.error().kind == ErrorKind::Permission);
}

TEST_CASE("raw backend: a full queue answers Busy, and every request completes once")
{
    test::TempDir dir;
    std::string path = dir.path("q.img");
    make_file(path, 1 << 20);
    auto backend = RawBackend::open(path, RawOptions { .queue_depth = 4 });
    REQUIRE(backend);
    auto& b = *backend.value();
    std::vector<std::byte> buf(4096 * 5);
    std::vector<iovec> iov(5);
    for (unsigned i = 0; i < 4; ++i) {
        iov[i] = iovec { buf.data() + i * 4096, 4096 };
        REQUIRE(b.submit(BlockRequest { BlockOp::Read, i * 4096ull, 4096, { &iov[i], 1 }, i }));
    }
    iov[4] = iovec { buf.data() + 4 * 4096, 4096 };
    auto busy = b.submit(BlockRequest { BlockOp::Read, 0, 4096, { &iov[4], 1 }, 4 });
    REQUIRE(!busy);
    CHECK(busy.error().kind == ErrorKind::Busy);
    REQUIRE(b.kick());
    std::map<std::uint64_t, int> seen;
    while (seen.size() < 4)
        b.reap([&](BlockCompletion&& c) { seen[c.tag] += c.status ? 1 : 100; }, true);
    for (auto const& [tag, count] : seen)
        CHECK(count == 1);
}
