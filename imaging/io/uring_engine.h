// UringEngine: the io_uring implementation of IoEngine (io_engine.h), strata's
// production I/O path. One ring per engine; requests are batched and handed to
// the kernel by kick(); files are registered with io_uring_register_files so
// each request skips the fd lookup; an eventfd registered with
// io_uring_register_eventfd is the completion_fd. At most `cap` requests are in
// the kernel at once; the rest wait in a software queue. Short reads and writes
// are resubmitted for the rest; O_DIRECT files get an aligned bounce buffer when
// a caller's buffer is unaligned.
//
// Threading: one thread drives an engine at a time (see io_engine.h).
#pragma once

#include "imaging/io/io_engine.h"

#include <deque>
#include <liburing.h>

namespace strata {

class UringEngine final : public IoEngine {
public:
    [[nodiscard]] static Result<std::unique_ptr<UringEngine>> create(unsigned cap);
    ~UringEngine() override;
    UringEngine(UringEngine const&) = delete;
    UringEngine& operator=(UringEngine const&) = delete;

    Result<FileId> add_file(int fd, IoFileInfo info) override;
    void remove_file(FileId file) override;
    void submit(IoRequest const& request) override;
    Status kick() override;
    int completion_fd() const override { return m_event_fd.get(); }
    void notify() override;
    std::size_t reap(std::function<void(IoCompletion const&)> const& on_complete, bool wait) override;
    unsigned outstanding() const override { return m_in_kernel + static_cast<unsigned>(m_queue.size()); }
    unsigned max_in_flight() const override { return m_cap; }
    int file_descriptor(FileId file) const override
    {
        return file < m_files.size() && m_files[file].used ? m_files[file].fd : -1;
    }

private:
    struct Queued {
        IoRequest request;
        std::vector<iovec> iov;
    };
    struct Slot {
        IoRequest request;            // iov field unused; see iov/orig
        std::vector<iovec> iov;       // what is left to transfer
        std::vector<iovec> orig;      // the caller's buffers (bounced requests)
        AlignedBuffer bounce;
        iovec bounce_iov {};
        std::uint64_t done { 0 };
        bool busy { false };
    };
    struct File {
        int fd { -1 };
        IoFileInfo info;
        bool used { false };
    };

    explicit UringEngine(unsigned cap);
    bool start(Queued&& q);
    bool prep(unsigned slot_index);
    io_uring_sqe* get_sqe();

    io_uring m_ring {};
    bool m_ring_ok { false };
    bool m_fixed_files { false };
    Fd m_event_fd;
    unsigned m_cap;
    unsigned m_in_kernel { 0 };
    std::vector<Slot> m_slots;
    std::vector<unsigned> m_free;
    std::deque<Queued> m_queue;
    std::vector<File> m_files;
    std::vector<IoCompletion> m_ready; // completed without reaching the kernel
};

} // namespace strata
