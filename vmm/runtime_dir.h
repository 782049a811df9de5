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
// Threading: pure functions, and make_runtime_dir, which only makes folders.
#pragma once

#include "base/result.h"

#include <string>

namespace strata {

struct RuntimePaths {
    std::string dir;
    std::string api_socket;
    std::string console_socket;
    std::string serial_log;
    std::string pid_file;
};

RuntimePaths runtime_paths(std::string const& store_root, std::string const& vm_name);

// Makes dir (RuntimePaths::dir) and each missing level above it, mode 0700; levels
// that exist already are left as they are. Then dir and its parent (the per-user
// base: /tmp/strata-<uid> or $XDG_RUNTIME_DIR/strata) must be real folders (not
// links) owned by this user with mode 0700, whoever made them: otherwise
// Permission, and nothing is used.
[[nodiscard]] Status make_runtime_dir(std::string const& dir);

// That one folder passes make_runtime_dir's ownership and mode checks.
[[nodiscard]] Status check_private_dir(std::string const& dir);

} // namespace strata
