#include "base/file.h"

#include "base/fd.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>

namespace strata {

Result<std::vector<std::byte>> read_file(std::string const& path, std::string const& what, std::uint64_t max_size)
{
    std::string name = what + " '" + path + "'";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno_error(name);
    Fd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) < 0)
        return errno_error(name);
    if (S_ISDIR(st.st_mode))
        return make_error(ErrorKind::BadInput, name + " is a directory");
    if (!S_ISREG(st.st_mode))
        return make_error(ErrorKind::BadInput, name + " is not a regular file");
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > max_size)
        return make_error(ErrorKind::BadInput, name + " is " + std::to_string(size >> 20) + " MiB, more than the " + std::to_string(max_size >> 20) + " MiB allowed");
    std::vector<std::byte> data(static_cast<std::size_t>(size));
    auto r = pread_all(fd, data, 0);
    if (!r)
        return r.error().context(name);
    return data;
}

} // namespace strata
