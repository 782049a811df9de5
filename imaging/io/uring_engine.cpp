#include "imaging/io/uring_engine.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata {

// Registered-file table size: the most layers one engine can serve at once.
static constexpr unsigned kFileTableSize = 512;

UringEngine::UringEngine(unsigned cap)
    : m_cap(cap)
    , m_slots(cap)
{
    for (unsigned i = cap; i > 0; --i)
        m_free.push_back(i - 1);
}

Result<std::unique_ptr<UringEngine>> UringEngine::create(unsigned cap)
{
    if (cap == 0 || cap > 4096)
        return make_error(ErrorKind::Usage, "io_uring engine: in-flight cap must be 1..4096");
    std::unique_ptr<UringEngine> engine(new UringEngine(cap));
    int rc = io_uring_queue_init(cap, &engine->m_ring, 0);
    if (rc < 0) {
        Error e = errno_error("io_uring_queue_init", -rc);
        e.kind = ErrorKind::Unavailable;
        return e;
    }
    engine->m_ring_ok = true;
    int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0)
        return errno_error("eventfd");
    engine->m_event_fd.reset(efd);
    rc = io_uring_register_eventfd(&engine->m_ring, efd);
    if (rc < 0)
        return errno_error("io_uring_register_eventfd", -rc);
    // Registered files save an fd lookup and refcount per request; kernels that
    // lack sparse tables fall back to plain descriptors.
    engine->m_fixed_files = io_uring_register_files_sparse(&engine->m_ring, kFileTableSize) == 0;
    return engine;
}

UringEngine::~UringEngine()
{
    if (!m_ring_ok)
        return;
    // Wait for whatever is still in the kernel: its buffers belong to our slots.
    while (m_in_kernel > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&m_ring, &cqe) < 0)
            break;
        io_uring_cqe_seen(&m_ring, cqe);
        --m_in_kernel;
    }
    io_uring_queue_exit(&m_ring);
}

Result<FileId> UringEngine::add_file(int fd, IoFileInfo info)
{
    unsigned index = 0;
    while (index < m_files.size() && m_files[index].used)
        ++index;
    if (index >= kFileTableSize)
        return make_error(ErrorKind::NoSpace, "io_uring engine: more than 512 open files");
    if (m_fixed_files) {
        int rc = io_uring_register_files_update(&m_ring, index, &fd, 1);
        if (rc < 0)
            return errno_error("io_uring_register_files_update", -rc);
    }
    if (index == m_files.size())
        m_files.emplace_back();
    m_files[index] = File { fd, info, true };
    return FileId { index };
}

void UringEngine::remove_file(FileId file)
{
    if (file >= m_files.size() || !m_files[file].used)
        return;
    if (m_fixed_files) {
        int none = -1;
        (void)io_uring_register_files_update(&m_ring, file, &none, 1);
    }
    m_files[file] = File {};
}

void UringEngine::notify()
{
    eventfd_signal(m_event_fd.get());
}

void UringEngine::submit(IoRequest const& request)
{
    Queued q { request, std::vector<iovec>(request.iov.begin(), request.iov.end()) };
    q.request.iov = {};
    if (request.file >= m_files.size() || !m_files[request.file].used
        || ((request.op == IoOp::Read || request.op == IoOp::Write) && iov_total(q.iov) != request.length)) {
        m_ready.push_back(IoCompletion { request.token, -EINVAL });
        notify();
        return;
    }
    m_queue.push_back(std::move(q));
}

io_uring_sqe* UringEngine::get_sqe()
{
    io_uring_sqe* sqe = io_uring_get_sqe(&m_ring);
    if (!sqe) {
        // The submission ring is full: hand what is there to the kernel first.
        (void)io_uring_submit(&m_ring);
        sqe = io_uring_get_sqe(&m_ring);
    }
    return sqe;
}

static bool misaligned(std::vector<iovec> const& iov, IoFileInfo const& info)
{
    if (!info.direct)
        return false;
    for (auto const& v : iov) {
        // SAFETY: the pointer is only converted to an integer to test its alignment.
        if (reinterpret_cast<std::uintptr_t>(v.iov_base) % info.mem_align != 0 || v.iov_len % info.io_align != 0)
            return true;
    }
    return false;
}

bool UringEngine::start(Queued&& q)
{
    unsigned index = m_free.back();
    Slot& s = m_slots[index];
    s.request = q.request;
    s.done = 0;
    s.orig.clear();
    s.iov = std::move(q.iov);
    IoFileInfo const& info = m_files[s.request.file].info;
    if ((s.request.op == IoOp::Read || s.request.op == IoOp::Write) && misaligned(s.iov, info)) {
        s.bounce = AlignedBuffer(s.request.length);
        s.orig = std::move(s.iov);
        if (s.request.op == IoOp::Write)
            iov_to_buf(s.orig, 0, s.bounce.span());
        s.iov.assign(1, iovec { s.bounce.data(), s.request.length });
    }
    if (!prep(index))
        return false;
    m_free.pop_back();
    s.busy = true;
    ++m_in_kernel;
    return true;
}

bool UringEngine::prep(unsigned index)
{
    Slot& s = m_slots[index];
    io_uring_sqe* sqe = get_sqe();
    if (!sqe)
        return false;
    File const& f = m_files[s.request.file];
    int fd = m_fixed_files ? static_cast<int>(s.request.file) : f.fd;
    std::uint64_t offset = s.request.offset + s.done;
    switch (s.request.op) {
    case IoOp::Read:
        io_uring_prep_readv(sqe, fd, s.iov.data(), static_cast<unsigned>(s.iov.size()), offset);
        break;
    case IoOp::Write:
        io_uring_prep_writev(sqe, fd, s.iov.data(), static_cast<unsigned>(s.iov.size()), offset);
        break;
    case IoOp::Fdatasync:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    case IoOp::Fallocate:
        io_uring_prep_fallocate(sqe, fd, s.request.fallocate_mode, s.request.offset, s.request.length);
        break;
    }
    if (m_fixed_files)
        io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    io_uring_sqe_set_data64(sqe, index);
    return true;
}

Status UringEngine::kick()
{
    while (!m_queue.empty() && !m_free.empty()) {
        if (!start(std::move(m_queue.front())))
            break;
        m_queue.pop_front();
    }
    int rc = io_uring_submit(&m_ring);
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
        return errno_error("io_uring_submit", -rc);
    return ok();
}

// Drops the first n transferred bytes from an iovec array.
static void advance(std::vector<iovec>& iov, std::uint64_t n)
{
    std::size_t i = 0;
    while (i < iov.size() && n >= iov[i].iov_len) {
        n -= iov[i].iov_len;
        ++i;
    }
    iov.erase(iov.begin(), iov.begin() + static_cast<std::ptrdiff_t>(i));
    if (n > 0 && !iov.empty()) {
        iov[0].iov_base = static_cast<std::byte*>(iov[0].iov_base) + n;
        iov[0].iov_len -= n;
    }
}

std::size_t UringEngine::reap(std::function<void(IoCompletion const&)> const& on_complete, bool wait)
{
    eventfd_drain(m_event_fd.get());
    std::size_t reaped = 0;
    bool resubmit = false;
    while (true) {
        while (!m_ready.empty()) {
            IoCompletion c = m_ready.back();
            m_ready.pop_back();
            on_complete(c);
            ++reaped;
        }
        io_uring_cqe* cqes[64];
        unsigned n = io_uring_peek_batch_cqe(&m_ring, cqes, 64);
        for (unsigned i = 0; i < n; ++i) {
            unsigned index = static_cast<unsigned>(io_uring_cqe_get_data64(cqes[i]));
            int res = cqes[i]->res;
            Slot& s = m_slots[index];
            bool transfer = s.request.op == IoOp::Read || s.request.op == IoOp::Write;
            if (transfer && res >= 0) {
                if (res == 0) {
                    res = s.request.op == IoOp::Read ? -ENODATA : -EIO;
                } else if (s.done + static_cast<std::uint64_t>(res) < s.request.length) {
                    // A short transfer: resubmit the rest from the same slot.
                    s.done += static_cast<std::uint64_t>(res);
                    advance(s.iov, static_cast<std::uint64_t>(res));
                    if (prep(index)) {
                        resubmit = true;
                        continue;
                    }
                    res = -EAGAIN;
                } else {
                    res = 0;
                }
            } else if (res > 0) {
                res = 0;
            }
            if (res == 0 && s.request.op == IoOp::Read && !s.orig.empty())
                buf_to_iov(s.bounce.span(), s.orig, 0);
            s.bounce = AlignedBuffer();
            s.orig.clear();
            s.busy = false;
            m_free.push_back(index);
            --m_in_kernel;
            on_complete(IoCompletion { s.request.token, res });
            ++reaped;
        }
        io_uring_cq_advance(&m_ring, n);
        if (!m_queue.empty() && !m_free.empty()) {
            (void)kick();
            resubmit = false;
        } else if (resubmit) {
            (void)io_uring_submit(&m_ring);
            resubmit = false;
        }
        if (reaped > 0 || !wait || outstanding() == 0)
            break;
        if (m_in_kernel == 0) {
            (void)kick();
            continue;
        }
        io_uring_cqe* cqe = nullptr;
        int rc = io_uring_wait_cqe(&m_ring, &cqe);
        if (rc < 0 && rc != -EINTR)
            break;
    }
    return reaped;
}

} // namespace strata
