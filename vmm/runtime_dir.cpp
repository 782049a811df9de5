#include "vmm/runtime_dir.h"

#include <cstdlib>
#include "base/sha256.h"

#include <cerrno>
#include <cstdio>
#include <span>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

RuntimePaths runtime_paths(std::string const& store_root, std::string const& vm_name)
{
    std::string key_input = store_root + '\0' + vm_name;
    std::string const key = sha256_hex(sha256_bytes(std::as_bytes(std::span(key_input))), 8);
    std::string base;
    if (char const* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg && std::string(xdg).size() < 60)
        base = std::string(xdg) + "/strata";
    else
        base = "/tmp/strata-" + std::to_string(::getuid());
    RuntimePaths p;
    p.dir = base + "/" + key;
    p.api_socket = p.dir + "/api.sock";
    p.console_socket = p.dir + "/console.sock";
    p.serial_log = p.dir + "/serial.log";
    p.pid_file = p.dir + "/pid";
    p.lock_file = p.dir + "/lock";
    return p;
}

namespace {

Fd open_lock(RuntimePaths const& paths, bool create)
{
    return Fd(::open(paths.lock_file.c_str(), (create ? O_RDWR | O_CREAT : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
}

} // namespace

Result<Fd> take_vmm_lock(RuntimePaths const& paths)
{
    Fd fd = open_lock(paths, true);
    if (!fd.valid())
        return errno_error("open the VMM lock '" + paths.lock_file + "'");
    // A checker holds a shared lock for an instant; a VMM holds it for good.
    for (int i = 0; i < 100; ++i) {
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return errno_error("lock '" + paths.lock_file + "'");
        ::usleep(10'000);
    }
    return make_error(ErrorKind::Busy, "another VMM runs this VM (it holds '" + paths.lock_file + "')");
}

bool vmm_lock_held(RuntimePaths const& paths)
{
    Fd fd = open_lock(paths, false);
    if (!fd.valid())
        return false; // no lock file: no VMM ever ran here, or the folder is gone
    if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) {
        ::flock(fd.get(), LOCK_UN);
        return false;
    }
    return errno == EWOULDBLOCK;
}

std::optional<Fd> try_vmm_lock(RuntimePaths const& paths)
{
    Fd fd = open_lock(paths, true);
    if (!fd.valid())
        return std::nullopt;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
        return std::nullopt;
    return fd;
}

Status check_private_dir(std::string const& dir)
{
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0)
        return errno_error("runtime folder '" + dir + "'");
    auto refuse = [&](std::string const& why) {
        return make_error(ErrorKind::Permission, "runtime folder '" + dir + "' " + why + "; refusing to use it (remove it, or set XDG_RUNTIME_DIR)");
    };
    if (S_ISLNK(st.st_mode))
        return refuse("is a symbolic link");
    if (!S_ISDIR(st.st_mode))
        return refuse("is not a folder");
    if (st.st_uid != ::geteuid())
        return refuse("belongs to uid " + std::to_string(st.st_uid) + ", not to this user (uid " + std::to_string(::geteuid()) + ")");
    if ((st.st_mode & 07777) != 0700) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return refuse(std::string("has mode ") + mode + ", not 0700");
    }
    return ok();
}

Status make_runtime_dir(std::string const& dir)
{
    std::string partial;
    for (std::size_t at = 1; at != std::string::npos;) {
        at = dir.find('/', at + 1);
        partial = dir.substr(0, at);
        if (::mkdir(partial.c_str(), 0700) < 0 && errno != EEXIST)
            return errno_error("create runtime folder '" + partial + "'");
    }
    // The last two levels are strata's own (the per-user base and the VM's
    // folder); whoever made them first, they must be this user's alone, or
    // another user could read the console, drive the API or plant links.
    auto slash = dir.find_last_of('/');
    if (slash != std::string::npos && slash > 0)
        STRATA_TRY(check_private_dir(dir.substr(0, slash)));
    return check_private_dir(dir);
}

} // namespace strata
