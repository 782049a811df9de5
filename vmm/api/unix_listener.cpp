// The API socket file; see unix_listener.h.
#include "vmm/api/unix_listener.h"

#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace strata::api {

namespace {

Result<sockaddr_un> make_address(std::string const& path)
{
    sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    // sun_path needs room for the terminating NUL: 107 bytes of path on Linux.
    if (path.empty() || path.size() >= sizeof(addr.sun_path))
        return make_error(ErrorKind::Usage,
            "API socket path '" + path + "' must be 1 to " + std::to_string(sizeof(addr.sun_path) - 1) + " bytes long");
    if (path.find('\0') != std::string::npos)
        return make_error(ErrorKind::Usage, "API socket path contains a NUL byte");
    std::memcpy(addr.sun_path, path.data(), path.size());
    return addr;
}

Result<Fd> new_socket()
{
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return errno_error("socket(AF_UNIX)");
    return fd;
}

int connect_to(int fd, sockaddr_un const& addr)
{
    int rc;
    do {
        // SAFETY: sockaddr_un is one of the sockaddr family layouts connect() takes;
        // the length passed says which.
        rc = ::connect(fd, reinterpret_cast<sockaddr const*>(&addr), sizeof(addr));
    } while (rc < 0 && errno == EINTR);
    return rc;
}

// Removes a stale socket at `path`, refuses a live one or a non-socket.
Status clear_path(std::string const& path, sockaddr_un const& addr)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT)
            return ok();
        return errno_error("API socket path '" + path + "'");
    }
    if (!S_ISSOCK(st.st_mode))
        return make_error(ErrorKind::Exists, "API socket path '" + path + "' exists and is not a socket");
    STRATA_TRY(probe, new_socket());
    if (connect_to(probe.get(), addr) == 0 || errno == EAGAIN)
        return make_error(ErrorKind::Busy, "API socket '" + path + "' is in use by a running process");
    if (errno != ECONNREFUSED)
        return errno_error("probe API socket '" + path + "'");
    // Nobody listens: a VMM that died without removing its socket left it.
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
        return errno_error("remove stale API socket '" + path + "'");
    return ok();
}

// The name the socket is bound to before it is published at `path`: in the same
// directory, so that renaming it there is atomic. Empty when it would not fit in
// sun_path; the socket is then bound at `path` itself.
std::string staging_name(std::string const& path)
{
    auto const slash = path.rfind('/');
    std::string const dir = slash == std::string::npos ? std::string {} : path.substr(0, slash + 1);
    std::string name = dir + ".strata-api-" + std::to_string(::getpid());
    if (name.size() >= sizeof(sockaddr_un::sun_path))
        return {};
    return name;
}

// Moves the listening socket from `from` to `path`, refusing to replace anything
// that appeared at `path` since clear_path() looked.
Status publish(std::string const& from, std::string const& path)
{
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0)
        return ok();
    int const rename_errno = errno;
    if (rename_errno == EEXIST)
        return make_error(ErrorKind::Busy, "API socket '" + path + "' was created by another process meanwhile");
    if (rename_errno != EINVAL && rename_errno != ENOSYS)
        return errno_error("publish API socket '" + path + "'", rename_errno);
    // A file system without RENAME_NOREPLACE: a hard link also refuses an existing name.
    if (::link(from.c_str(), path.c_str()) < 0) {
        if (errno == EEXIST)
            return make_error(ErrorKind::Busy, "API socket '" + path + "' was created by another process meanwhile");
        return errno_error("publish API socket '" + path + "'");
    }
    ::unlink(from.c_str());
    return ok();
}

} // namespace

Result<UnixListener> listen_unix(std::string const& path, int backlog)
{
    STRATA_TRY(addr, make_address(path));
    STRATA_TRY(clear_path(path, addr));
    STRATA_TRY(fd, new_socket());

    // The socket is bound and listening before its file appears at `path`: a client
    // that waits for the file (as Firecracker's users do) and connects at once must
    // not find a socket that refuses it. So it is bound under a staging name in the
    // same directory and renamed into place once it listens.
    std::string const staging = staging_name(path);
    std::string const& bound = staging.empty() ? path : staging;
    STRATA_TRY(bind_addr, make_address(bound));
    if (!staging.empty())
        ::unlink(staging.c_str()); // a leftover of an earlier process with our pid

    // bind() creates the file with 0777 & ~umask; a umask of 0177 makes it 0600
    // from its first instant, so no other user can connect in between.
    mode_t const old_mask = ::umask(0177);
    // SAFETY: as in connect_to(): sockaddr_un is a sockaddr layout bind() takes.
    int const rc = ::bind(fd.get(), reinterpret_cast<sockaddr const*>(&bind_addr), sizeof(bind_addr));
    int const bind_errno = errno;
    ::umask(old_mask);
    if (rc < 0) {
        if (bind_errno == EADDRINUSE)
            return make_error(ErrorKind::Busy, "API socket '" + path + "' was created by another process meanwhile");
        return errno_error("bind API socket '" + path + "'", bind_errno);
    }

    auto fail = [&](Error error) -> Result<UnixListener> {
        ::unlink(bound.c_str());
        return error;
    };
    if (::chmod(bound.c_str(), 0600) < 0)
        return fail(errno_error("set mode of API socket '" + path + "'"));
    if (::listen(fd.get(), backlog) < 0)
        return fail(errno_error("listen on API socket '" + path + "'"));
    if (!staging.empty()) {
        if (auto published = publish(staging, path); !published)
            return fail(published.error());
    }

    UnixListener listener;
    struct stat st {};
    if (::lstat(path.c_str(), &st) < 0) {
        auto error = errno_error("API socket '" + path + "'");
        ::unlink(path.c_str());
        return error;
    }
    listener.device = st.st_dev;
    listener.inode = st.st_ino;
    listener.fd = std::move(fd);
    return listener;
}

void remove_socket_file(std::string const& path, UnixListener const& listener)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == listener.device && st.st_ino == listener.inode)
        ::unlink(path.c_str());
}

Result<Fd> connect_unix(std::string const& path)
{
    STRATA_TRY(addr, make_address(path));
    STRATA_TRY(fd, new_socket());
    if (connect_to(fd.get(), addr) < 0)
        return errno_error("connect to API socket '" + path + "'");
    return std::move(fd);
}

} // namespace strata::api
