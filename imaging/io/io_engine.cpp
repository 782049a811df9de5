#include "imaging/io/io_engine.h"

#include "imaging/io/sync_engine.h"
#include "imaging/io/uring_engine.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

Status IoEngine::set_file_size(FileId file, std::uint64_t size)
{
    int fd = file_descriptor(file);
    if (fd < 0)
        return make_error(ErrorKind::Internal, "set_file_size: file " + std::to_string(file) + " is not registered");
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
        return errno_error("ftruncate");
    return ok();
}

Status IoEngine::punch_hole(FileId file, std::uint64_t offset, std::uint64_t length)
{
    int fd = file_descriptor(file);
    if (fd < 0)
        return make_error(ErrorKind::Internal, "punch_hole: file " + std::to_string(file) + " is not registered");
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0)
        return errno_error("fallocate(PUNCH_HOLE)");
    return ok();
}

Result<std::unique_ptr<IoEngine>> make_engine(EngineKind kind, unsigned cap)
{
    if (kind == EngineKind::Sync)
        return std::unique_ptr<IoEngine>(std::make_unique<SyncEngine>());
    STRATA_TRY(engine, UringEngine::create(cap));
    return std::unique_ptr<IoEngine>(std::move(engine));
}

Result<OpenedFile> open_for_io(std::string const& path, int flags, CacheMode cache, unsigned mode)
{
    OpenedFile out;
    flags |= O_CLOEXEC;
    if (cache == CacheMode::None) {
        int fd = ::open(path.c_str(), flags | O_DIRECT, mode);
        if (fd >= 0) {
            out.fd.reset(fd);
            out.info.direct = true;
        } else if (errno != EINVAL) {
            return errno_error("open '" + path + "'");
        }
        // EINVAL: the file system refuses O_DIRECT (tmpfs); use the page cache.
    }
    if (!out.fd.valid()) {
        int fd = ::open(path.c_str(), flags, mode);
        if (fd < 0)
            return errno_error("open '" + path + "'");
        out.fd.reset(fd);
    }
    if (out.info.direct) {
        // Without STATX_DIOALIGN (older kernels) assume the strictest common case.
        out.info.mem_align = 4096;
        out.info.io_align = 4096;
        struct statx stx {};
        if (::statx(out.fd.get(), "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)
            && stx.stx_dio_mem_align != 0 && stx.stx_dio_offset_align != 0) {
            out.info.mem_align = stx.stx_dio_mem_align;
            out.info.io_align = stx.stx_dio_offset_align;
        }
    }
    return out;
}

Status run_sync(IoEngine& engine, IoRequest request)
{
    request.token = 0x5359'4e43; // any value: nothing else is outstanding
    engine.submit(request);
    STRATA_TRY(engine.kick());
    std::optional<int> res;
    while (!res)
        engine.reap([&](IoCompletion const& c) { res = c.res; }, true);
    if (*res < 0)
        return errno_error("file I/O", -*res);
    return ok();
}

Status write_sync(IoEngine& engine, FileId file, std::uint64_t offset, std::span<std::byte const> buf)
{
    // SAFETY: iovec has no const variant; a write never modifies its buffer.
    iovec iov { const_cast<std::byte*>(buf.data()), buf.size() };
    return run_sync(engine, IoRequest { IoOp::Write, file, offset, buf.size(), { &iov, 1 }, 0, 0 });
}

Status read_sync(IoEngine& engine, FileId file, std::uint64_t offset, std::span<std::byte> buf)
{
    iovec iov { buf.data(), buf.size() };
    return run_sync(engine, IoRequest { IoOp::Read, file, offset, buf.size(), { &iov, 1 }, 0, 0 });
}

Status fdatasync_sync(IoEngine& engine, FileId file)
{
    return run_sync(engine, IoRequest { IoOp::Fdatasync, file, 0, 0, {}, 0, 0 });
}

AlignedBuffer::AlignedBuffer(std::size_t size)
{
    std::size_t rounded = std::max<std::size_t>(4096, (size + 4095) & ~std::size_t { 4095 });
    void* p = std::aligned_alloc(4096, rounded);
    if (!p)
        std::abort(); // out of memory for a bounded metadata or bounce buffer
    std::memset(p, 0, rounded);
    m_data = static_cast<std::byte*>(p);
    m_size = size;
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : m_data(std::exchange(other.m_data, nullptr))
    , m_size(std::exchange(other.m_size, 0))
{
}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept
{
    if (this != &other) {
        std::free(m_data);
        m_data = std::exchange(other.m_data, nullptr);
        m_size = std::exchange(other.m_size, 0);
    }
    return *this;
}

AlignedBuffer::~AlignedBuffer() { std::free(m_data); }

std::uint64_t iov_total(std::span<iovec const> iov)
{
    std::uint64_t total = 0;
    for (auto const& v : iov)
        total += v.iov_len;
    return total;
}

void iov_slice(std::span<iovec const> iov, std::uint64_t offset, std::uint64_t length, std::vector<iovec>& out)
{
    for (auto const& v : iov) {
        if (length == 0)
            break;
        if (offset >= v.iov_len) {
            offset -= v.iov_len;
            continue;
        }
        std::uint64_t take = std::min<std::uint64_t>(v.iov_len - offset, length);
        out.push_back(iovec { static_cast<std::byte*>(v.iov_base) + offset, take });
        length -= take;
        offset = 0;
    }
}

template<typename F>
static void iov_walk(std::span<iovec const> iov, std::uint64_t offset, std::uint64_t length, F&& f)
{
    std::uint64_t done = 0;
    for (auto const& v : iov) {
        if (done == length)
            break;
        if (offset >= v.iov_len) {
            offset -= v.iov_len;
            continue;
        }
        std::uint64_t take = std::min<std::uint64_t>(v.iov_len - offset, length - done);
        f(static_cast<std::byte*>(v.iov_base) + offset, done, take);
        done += take;
        offset = 0;
    }
}

void iov_to_buf(std::span<iovec const> iov, std::uint64_t offset, std::span<std::byte> out)
{
    iov_walk(iov, offset, out.size(), [&](std::byte* p, std::uint64_t at, std::uint64_t n) { std::memcpy(out.data() + at, p, n); });
}

void buf_to_iov(std::span<std::byte const> in, std::span<iovec const> iov, std::uint64_t offset)
{
    iov_walk(iov, offset, in.size(), [&](std::byte* p, std::uint64_t at, std::uint64_t n) { std::memcpy(p, in.data() + at, n); });
}

void iov_memset_zero(std::span<iovec const> iov, std::uint64_t offset, std::uint64_t length)
{
    iov_walk(iov, offset, length, [&](std::byte* p, std::uint64_t, std::uint64_t n) { std::memset(p, 0, n); });
}

} // namespace strata
