#include "base/file.h"

#include "base/fd.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

namespace strata {

Result<RegularFile> open_regular_file(std::string const& path, std::string const& what, std::uint64_t max_size)
{
    std::string name = what + " '" + path + "'";
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error(name);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0)
        return errno_error(name);
    if (S_ISDIR(st.st_mode))
        return make_error(ErrorKind::BadInput, name + " is a directory");
    if (!S_ISREG(st.st_mode))
        return make_error(ErrorKind::BadInput, name + " is not a regular file");
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > max_size)
        return make_error(ErrorKind::BadInput, name + " is " + std::to_string(size >> 20) + " MiB, more than the " + std::to_string(max_size >> 20) + " MiB allowed");
    return RegularFile { std::move(fd), size };
}

Result<std::vector<std::byte>> read_file(std::string const& path, std::string const& what, std::uint64_t max_size)
{
    STRATA_TRY(file, open_regular_file(path, what, max_size));
    std::vector<std::byte> data(static_cast<std::size_t>(file.size));
    if (auto r = pread_all(file.fd.get(), data, 0); !r)
        return r.error().context(what + " '" + path + "'");
    return data;
}

Status write_new_file(std::string const& path, std::span<std::byte const> bytes)
{
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid())
        return errno_error("create '" + path + "'");
    STRATA_TRY(pwrite_all(fd.get(), bytes, 0));
    if (::fsync(fd.get()) != 0)
        return errno_error("sync '" + path + "'");
    return ok();
}

} // namespace strata
