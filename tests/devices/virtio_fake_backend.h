// An in-memory BlockBackend for the virtio-blk tests: asynchronous like the real
// ones (submit, kick, completion eventfd, reap), with knobs to hold completions
// (requests stay in flight until release()), to answer Busy early, and to fail
// requests, so backpressure, pause and reset can be tested deterministically.
#pragma once

#include "imaging/block_backend.h"

#include "base/fd.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vector>

namespace strata::test {

class MemBackend final : public BlockBackend {
public:
    explicit MemBackend(std::uint64_t size, unsigned depth = 64)
        : m_disk(size)
        , m_depth(depth)
        , m_event(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))
    {
    }

    std::uint64_t size() const override { return m_disk.size(); }
    bool read_only() const override { return m_read_only; }
    unsigned queue_depth() const override { return m_depth; }
    int completion_fd() const override { return m_event.get(); }

    Status submit(BlockRequest const& r) override
    {
        std::lock_guard lock(m_mutex);
        if (r.offset % 512 || r.length % 512 || r.offset > m_disk.size() || r.length > m_disk.size() - r.offset)
            return make_error(ErrorKind::Usage, "bad request");
        if (m_outstanding >= std::min(m_depth, m_busy_at))
            return make_error(ErrorKind::Busy, "full");
        ++m_outstanding;
        ++submits;
        m_queued.push_back(Op { r.op, r.offset, r.length, { r.iov.begin(), r.iov.end() }, r.tag });
        return ok();
    }

    Status kick() override
    {
        std::lock_guard lock(m_mutex);
        ++kicks;
        for (auto& op : m_queued)
            m_kicked.push_back(std::move(op));
        m_queued.clear();
        if (!m_hold)
            run_kicked();
        return ok();
    }

    std::size_t reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait) override
    {
        std::uint64_t counter = 0;
        while (true) {
            (void)!::read(m_event.get(), &counter, sizeof counter);
            std::vector<BlockCompletion> done;
            {
                std::lock_guard lock(m_mutex);
                done.swap(m_done);
                m_outstanding -= static_cast<unsigned>(done.size());
            }
            for (auto& c : done)
                on_complete(std::move(c));
            if (!done.empty() || !wait || in_flight() == 0)
                return done.size();
            pollfd p { m_event.get(), POLLIN, 0 };
            ::poll(&p, 1, 100);
        }
    }

    // Test controls (any thread).
    void hold(bool on)
    {
        std::lock_guard lock(m_mutex);
        m_hold = on;
        if (!on)
            run_kicked();
    }
    void busy_at(unsigned n)
    {
        std::lock_guard lock(m_mutex);
        m_busy_at = n;
    }
    void fail_reads(bool on)
    {
        std::lock_guard lock(m_mutex);
        m_fail_reads = on;
    }
    void set_read_only(bool on) { m_read_only = on; }
    unsigned in_flight() const
    {
        std::lock_guard lock(m_mutex);
        return m_outstanding;
    }
    unsigned held() const
    {
        std::lock_guard lock(m_mutex);
        return static_cast<unsigned>(m_kicked.size());
    }
    std::vector<std::byte>& disk() { return m_disk; }

    std::atomic<std::uint64_t> submits { 0 };
    std::atomic<std::uint64_t> kicks { 0 };
    std::atomic<std::uint64_t> flushes { 0 };

private:
    struct Op {
        BlockOp op;
        std::uint64_t offset;
        std::uint64_t length;
        std::vector<iovec> iov;
        std::uint64_t tag;
    };

    void run_kicked()
    {
        for (auto& op : m_kicked) {
            Status st = ok();
            std::uint64_t at = op.offset;
            switch (op.op) {
            case BlockOp::Read:
                if (m_fail_reads) {
                    st = make_error(ErrorKind::Io, "injected read error");
                    break;
                }
                for (auto const& v : op.iov) {
                    std::memcpy(v.iov_base, m_disk.data() + at, v.iov_len);
                    at += v.iov_len;
                }
                break;
            case BlockOp::Write:
                for (auto const& v : op.iov) {
                    std::memcpy(m_disk.data() + at, v.iov_base, v.iov_len);
                    at += v.iov_len;
                }
                break;
            case BlockOp::Flush: ++flushes; break;
            case BlockOp::Discard:
            case BlockOp::WriteZeroes:
                std::memset(m_disk.data() + op.offset, 0, op.length);
                break;
            }
            m_done.push_back(BlockCompletion { op.tag, std::move(st) });
        }
        m_kicked.clear();
        std::uint64_t one = 1;
        (void)!::write(m_event.get(), &one, sizeof one);
    }

    mutable std::mutex m_mutex;
    std::vector<std::byte> m_disk;
    unsigned m_depth;
    Fd m_event;
    bool m_read_only { false };
    bool m_hold { false };
    bool m_fail_reads { false };
    unsigned m_busy_at { UINT_MAX };
    unsigned m_outstanding { 0 };
    std::vector<Op> m_queued;
    std::vector<Op> m_kicked;
    std::vector<BlockCompletion> m_done;
};

} // namespace strata::test
