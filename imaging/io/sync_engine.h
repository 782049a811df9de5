// SyncEngine: an IoEngine (io_engine.h) that performs each request with
// pread/pwrite/fdatasync/fallocate when kick() runs, for tests and for systems
// without io_uring. Same contract as UringEngine: every request completes once,
// res is 0 or -errno, short transfers are retried, completion_fd is an eventfd.
//
// Threading: one thread drives an engine at a time (see io_engine.h).
#pragma once

#include "imaging/io/io_engine.h"

#include <deque>

namespace strata {

class SyncEngine final : public IoEngine {
public:
    SyncEngine();

    Result<FileId> add_file(int fd, IoFileInfo info) override;
    void remove_file(FileId file) override;
    void submit(IoRequest const& request) override;
    Status kick() override;
    int completion_fd() const override { return m_event_fd.get(); }
    void notify() override;
    std::size_t reap(std::function<void(IoCompletion const&)> const& on_complete, bool wait) override;
    unsigned outstanding() const override { return static_cast<unsigned>(m_queue.size() + m_done.size()); }
    unsigned max_in_flight() const override { return 1; }
    int file_descriptor(FileId file) const override { return file < m_files.size() ? m_files[file] : -1; }

private:
    struct Queued {
        IoRequest request;
        std::vector<iovec> iov;
    };
    int perform(Queued& q);

    Fd m_event_fd;
    std::vector<int> m_files; // -1 for removed entries
    std::vector<IoFileInfo> m_info;
    std::deque<Queued> m_queue;
    std::deque<IoCompletion> m_done;
};

} // namespace strata
