#include "base/fd.h"

#include <cerrno>
#include <sys/types.h>

namespace strata {

Status pread_all(int fd, std::span<std::byte> buf, std::uint64_t offset)
{
    std::size_t done = 0;
    while (done < buf.size()) {
        ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("pread");
        }
        if (n == 0)
            return make_error(ErrorKind::BadInput, "unexpected end of file at offset " + std::to_string(offset + done));
        done += static_cast<std::size_t>(n);
    }
    return ok();
}

Status pwrite_all(int fd, std::span<std::byte const> buf, std::uint64_t offset)
{
    std::size_t done = 0;
    while (done < buf.size()) {
        ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("pwrite");
        }
        done += static_cast<std::size_t>(n);
    }
    return ok();
}

void eventfd_signal(int fd)
{
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
}

void eventfd_drain(int fd)
{
    std::uint64_t counter = 0;
    [[maybe_unused]] auto n = ::read(fd, &counter, sizeof counter);
}

} // namespace strata
