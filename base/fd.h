// An owned file descriptor that closes itself (RAII), small helpers for
// whole-buffer pread/pwrite used by synchronous code paths, and the two eventfd
// moves every event loop makes.
// Threading: a Fd is owned by one thread at a time; the descriptor itself may be
// shared for positional I/O (pread/pwrite) across threads.
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <unistd.h>

namespace strata {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd)
        : m_fd(fd)
    {
    }
    Fd(Fd const&) = delete;
    Fd& operator=(Fd const&) = delete;
    Fd(Fd&& other) noexcept
        : m_fd(other.release())
    {
    }
    Fd& operator=(Fd&& other) noexcept
    {
        if (this != &other)
            reset(other.release());
        return *this;
    }
    ~Fd() { reset(); }

    int get() const { return m_fd; }
    bool valid() const { return m_fd >= 0; }
    int release()
    {
        int fd = m_fd;
        m_fd = -1;
        return fd;
    }
    void reset(int fd = -1)
    {
        if (m_fd >= 0)
            ::close(m_fd);
        m_fd = fd;
    }

private:
    int m_fd { -1 };
};

// Reads exactly buf.size() bytes at offset, retrying short reads and EINTR.
// Reading past the end of the file is an error (BadInput), not a short read.
[[nodiscard]] Status pread_all(int fd, std::span<std::byte> buf, std::uint64_t offset);
// Writes exactly buf.size() bytes at offset, retrying short writes and EINTR.
[[nodiscard]] Status pwrite_all(int fd, std::span<std::byte const> buf, std::uint64_t offset);

// Adds one to an eventfd (a doorbell). The only failure is a counter at its
// maximum, which still leaves the eventfd readable, so there is nothing to report.
void eventfd_signal(int fd);
// Resets a non-blocking eventfd's counter; EAGAIN just means it was zero.
void eventfd_drain(int fd);

} // namespace strata
