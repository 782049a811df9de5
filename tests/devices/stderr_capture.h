// Test support: captures what the process writes to stderr (fd 2) while an
// object lives, so that a test can assert why a device refused a request: the
// devices count refusals in their metrics and name the reason only in their
// rate-limited warnings (devices/virtio/rate_limited_log.h).
//
// Threading: the redirection is process-wide; create one at a time. Other
// threads (a device's I/O thread) write into it too, which is the point.
#pragma once

#include <cstdio>
#include <string>
#include <unistd.h>

namespace strata::test {

class StderrCapture {
public:
    StderrCapture()
    {
        std::fflush(stderr);
        m_file = std::tmpfile();
        m_saved = ::dup(2);
        if (m_file != nullptr && m_saved >= 0)
            ::dup2(::fileno(m_file), 2);
    }
    ~StderrCapture()
    {
        std::fflush(stderr);
        if (m_saved >= 0) {
            ::dup2(m_saved, 2);
            ::close(m_saved);
        }
        if (m_file != nullptr)
            std::fclose(m_file);
    }
    StderrCapture(StderrCapture const&) = delete;
    StderrCapture& operator=(StderrCapture const&) = delete;

    // Everything written so far.
    std::string text() const
    {
        std::fflush(stderr);
        std::string out;
        if (m_file == nullptr)
            return out;
        char buf[4096];
        for (off_t at = 0;;) {
            ssize_t n = ::pread(::fileno(m_file), buf, sizeof buf, at);
            if (n <= 0)
                break;
            out.append(buf, static_cast<std::size_t>(n));
            at += n;
        }
        return out;
    }
    bool contains(std::string const& what) const { return text().find(what) != std::string::npos; }
    // Waits (up to 3 s) for `what` to appear: a device's thread may log just
    // after it completed the request the test waited for.
    bool eventually_contains(std::string const& what) const
    {
        for (int i = 0; i < 300; ++i) {
            if (contains(what))
                return true;
            ::usleep(10'000);
        }
        return false;
    }

private:
    std::FILE* m_file { nullptr };
    int m_saved { -1 };
};

} // namespace strata::test
