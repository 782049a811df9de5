#include "imaging/io/sync_engine.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

namespace strata {

SyncEngine::SyncEngine()
    : m_event_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))
{
}

Result<FileId> SyncEngine::add_file(int fd, IoFileInfo info)
{
    for (std::size_t i = 0; i < m_files.size(); ++i) {
        if (m_files[i] < 0) {
            m_files[i] = fd;
            m_info[i] = info;
            return static_cast<FileId>(i);
        }
    }
    m_files.push_back(fd);
    m_info.push_back(info);
    return static_cast<FileId>(m_files.size() - 1);
}

void SyncEngine::remove_file(FileId file)
{
    if (file < m_files.size())
        m_files[file] = -1;
}

void SyncEngine::notify()
{
    eventfd_signal(m_event_fd.get());
}

void SyncEngine::submit(IoRequest const& request)
{
    Queued q { request, std::vector<iovec>(request.iov.begin(), request.iov.end()) };
    q.request.iov = {};
    m_queue.push_back(std::move(q));
}

int SyncEngine::perform(Queued& q)
{
    IoRequest const& r = q.request;
    if (r.file >= m_files.size() || m_files[r.file] < 0)
        return -EINVAL;
    int fd = m_files[r.file];
    switch (r.op) {
    case IoOp::Fdatasync:
        return ::fdatasync(fd) == 0 ? 0 : -errno;
    case IoOp::Fallocate:
        return ::fallocate(fd, r.fallocate_mode, static_cast<off_t>(r.offset), static_cast<off_t>(r.length)) == 0 ? 0 : -errno;
    case IoOp::Read:
    case IoOp::Write:
        break;
    }
    if (iov_total(q.iov) != r.length)
        return -EINVAL;
    // Always go through one aligned buffer: simple, and right for O_DIRECT files.
    AlignedBuffer buf(r.length);
    if (r.op == IoOp::Write)
        iov_to_buf(q.iov, 0, buf.span());
    std::uint64_t done = 0;
    while (done < r.length) {
        ssize_t n = r.op == IoOp::Read
            ? ::pread(fd, buf.data() + done, r.length - done, static_cast<off_t>(r.offset + done))
            : ::pwrite(fd, buf.data() + done, r.length - done, static_cast<off_t>(r.offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return r.op == IoOp::Read ? -ENODATA : -EIO;
        done += static_cast<std::uint64_t>(n);
    }
    if (r.op == IoOp::Read)
        buf_to_iov(buf.span(), q.iov, 0);
    return 0;
}

Status SyncEngine::kick()
{
    bool any = !m_queue.empty();
    while (!m_queue.empty()) {
        int res = perform(m_queue.front());
        m_done.push_back(IoCompletion { m_queue.front().request.token, res });
        m_queue.pop_front();
    }
    if (any)
        notify();
    return ok();
}

std::size_t SyncEngine::reap(std::function<void(IoCompletion const&)> const& on_complete, bool wait)
{
    eventfd_drain(m_event_fd.get());
    if (wait && m_done.empty())
        (void)kick();
    std::size_t n = 0;
    while (!m_done.empty()) {
        IoCompletion c = m_done.front();
        m_done.pop_front();
        on_complete(c);
        ++n;
    }
    return n;
}

} // namespace strata
