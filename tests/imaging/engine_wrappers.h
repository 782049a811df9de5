// IoEngine wrappers for imaging tests: count operations, record writes and
// flushes for crash replay (dm-log-writes style), or fail chosen requests.
// Each forwards everything else to a real engine.
#pragma once

#include "imaging/io/io_engine.h"

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

namespace strata::test {

class WrapEngine : public IoEngine {
public:
    explicit WrapEngine(std::unique_ptr<IoEngine> inner)
        : m_inner(std::move(inner))
    {
    }
    Result<FileId> add_file(int fd, IoFileInfo info) override { return m_inner->add_file(fd, info); }
    void remove_file(FileId file) override { m_inner->remove_file(file); }
    void submit(IoRequest const& r) override
    {
        int fail = before(r);
        if (fail < 0) {
            m_failed.push_back(IoCompletion { r.token, fail });
            m_inner->notify();
            return;
        }
        m_live[r.token] = r;
        m_iovs[r.token].assign(r.iov.begin(), r.iov.end());
        m_inner->submit(r);
    }
    Status kick() override { return m_inner->kick(); }
    int completion_fd() const override { return m_inner->completion_fd(); }
    void notify() override { m_inner->notify(); }
    std::size_t reap(std::function<void(IoCompletion const&)> const& cb, bool wait) override
    {
        std::size_t n = 0;
        while (!m_failed.empty()) {
            IoCompletion c = m_failed.back();
            m_failed.pop_back();
            cb(c);
            ++n;
        }
        if (n > 0)
            wait = false;
        n += m_inner->reap([&](IoCompletion const& c) {
            auto it = m_live.find(c.token);
            if (it != m_live.end()) {
                IoRequest r = it->second;
                r.iov = m_iovs[c.token];
                after(r, c.res);
                m_live.erase(it);
            }
            cb(c);
        },
            wait);
        return n;
    }
    unsigned outstanding() const override { return m_inner->outstanding() + static_cast<unsigned>(m_failed.size()); }
    unsigned max_in_flight() const override { return m_inner->max_in_flight(); }
    Status set_file_size(FileId file, std::uint64_t size) override
    {
        Status s = m_inner->set_file_size(file, size);
        if (s)
            resized(file, size);
        return s;
    }
    Status punch_hole(FileId file, std::uint64_t offset, std::uint64_t length) override
    {
        Status s = m_inner->punch_hole(file, offset, length);
        if (s)
            punched(file, offset, length);
        return s;
    }
    int file_descriptor(FileId file) const override { return m_inner->file_descriptor(file); }

protected:
    // Returns -errno to fail the request without running it.
    virtual int before(IoRequest const&) { return 0; }
    virtual void after(IoRequest const&, int) { }
    // After a size change or a hole punched outside the request queue.
    virtual void resized(FileId, std::uint64_t) { }
    virtual void punched(FileId, std::uint64_t, std::uint64_t) { }

private:
    std::unique_ptr<IoEngine> m_inner;
    std::vector<IoCompletion> m_failed;
    std::unordered_map<std::uint64_t, IoRequest> m_live;
    std::unordered_map<std::uint64_t, std::vector<iovec>> m_iovs;
};

class CountingEngine final : public WrapEngine {
public:
    using WrapEngine::WrapEngine;
    std::uint64_t reads { 0 }, writes { 0 }, syncs { 0 }, bytes_read { 0 }, bytes_written { 0 };
    void reset() { reads = writes = syncs = bytes_read = bytes_written = 0; }

protected:
    int before(IoRequest const& r) override
    {
        if (r.op == IoOp::Read) {
            ++reads;
            bytes_read += r.length;
        } else if (r.op == IoOp::Write) {
            ++writes;
            bytes_written += r.length;
        } else if (r.op == IoOp::Fdatasync) {
            ++syncs;
        }
        return 0;
    }
};

// Logs each completed write (with its data), each fdatasync at submission, and
// each fdatasync's completion with the log position of its submission: writes
// logged before that position are durable once the completion is logged. Size
// changes and punched holes (IoEngine::set_file_size, punch_hole) are logged in
// order with the writes, and are durable on the same terms.
class RecordingEngine final : public WrapEngine {
public:
    enum class Change : std::uint8_t {
        Write,  // data at offset
        Resize, // the file's size becomes offset
        Punch,  // [offset, offset + length) reads as zeros, the size unchanged
    };
    struct Entry {
        bool flush;          // a sync (submission or completion)
        FileId file;
        std::uint64_t offset;
        std::vector<std::byte> data;
        std::size_t covers { SIZE_MAX }; // completions: log size at submission
        Change change { Change::Write };
        std::uint64_t length { 0 };      // Punch
    };
    using WrapEngine::WrapEngine;
    std::vector<Entry> log;

protected:
    int before(IoRequest const& r) override
    {
        if (r.op == IoOp::Fdatasync) {
            m_submitted[r.token] = log.size();
            log.push_back(Entry { true, r.file, 0, {} });
        }
        return 0;
    }
    void after(IoRequest const& r, int res) override
    {
        if (r.op == IoOp::Fdatasync) {
            if (res == 0)
                log.push_back(Entry { true, r.file, 0, {}, m_submitted[r.token] });
            return;
        }
        if (r.op != IoOp::Write || res < 0)
            return;
        Entry e { false, r.file, r.offset, std::vector<std::byte>(r.length) };
        iov_to_buf(r.iov, 0, e.data);
        log.push_back(std::move(e));
    }

    void resized(FileId file, std::uint64_t size) override
    {
        log.push_back(Entry { false, file, size, {}, SIZE_MAX, Change::Resize });
    }
    void punched(FileId file, std::uint64_t offset, std::uint64_t length) override
    {
        log.push_back(Entry { false, file, offset, {}, SIZE_MAX, Change::Punch, length });
    }

private:
    std::unordered_map<std::uint64_t, std::size_t> m_submitted;
};

// Fails requests the predicate picks with the given errno.
class FaultEngine final : public WrapEngine {
public:
    using WrapEngine::WrapEngine;
    std::function<int(IoRequest const&)> fault; // returns 0 or -errno

protected:
    int before(IoRequest const& r) override { return fault ? fault(r) : 0; }
};

} // namespace strata::test
