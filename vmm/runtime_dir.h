// Where a running VM's VMM keeps its runtime files: the API socket (api.sock), the
// console socket (console.sock), the serial log (serial.log) and its pid (pid).
// The folder is $XDG_RUNTIME_DIR/strata/<key> (or /tmp/strata-<uid>/<key> when
// XDG_RUNTIME_DIR is unset), where <key> is 16 hex digits of the SHA-256 of the
// store root and the VM name: short enough that the socket path fits the 108-byte
// limit of Unix sockets whatever $STRATA_HOME is, and distinct per store and VM.
// The folder and every level above it that does not exist yet are made 0700, since
// its parent may be shared (/tmp); the folder and its parent are refused unless
// they are this user's own with mode 0700, and the files in it are created with
// O_NOFOLLOW (and the pid file with O_EXCL, then renamed into place).
// A VMM holds an exclusive lock (flock) on the folder's `lock` file for its whole
// life: the kernel drops it when the process ends however it ends (SIGKILL, a
// crash), so the lock, never the pid file, tells a live VMM from a stale folder.
// The pid file is only for signalling the VMM that holds the lock (after a host
// reboot its pid may belong to any other process).
// Threading: pure functions, and make_runtime_dir, which only makes folders.
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <optional>

#include <string>

namespace strata {

struct RuntimePaths {
    std::string dir;
    std::string api_socket;
    std::string console_socket;
    std::string serial_log;
    std::string pid_file;
    std::string lock_file;
};

RuntimePaths runtime_paths(std::string const& store_root, std::string const& vm_name);

// Makes dir (RuntimePaths::dir) and each missing level above it, mode 0700; levels
// that exist already are left as they are. Then dir and its parent (the per-user
// base: /tmp/strata-<uid> or $XDG_RUNTIME_DIR/strata) must be real folders (not
// links) owned by this user with mode 0700, whoever made them: otherwise
// Permission, and nothing is used.
[[nodiscard]] Status make_runtime_dir(std::string const& dir);

// Takes the folder's VMM lock for the calling process, waiting up to a second for
// a checker (vmm_lock_held) to let go; Busy when another VMM holds it. The lock
// lasts as long as the returned descriptor.
[[nodiscard]] Result<Fd> take_vmm_lock(RuntimePaths const& paths);

// True while some process holds the folder's VMM lock (a live VMM).
bool vmm_lock_held(RuntimePaths const& paths);

// Takes the lock without waiting, for cleaning up a stale folder while no VMM can
// start in it; nullopt when a VMM holds it.
std::optional<Fd> try_vmm_lock(RuntimePaths const& paths);

// That one folder passes make_runtime_dir's ownership and mode checks.
[[nodiscard]] Status check_private_dir(std::string const& dir);

} // namespace strata
