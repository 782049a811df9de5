// Where a running VM's VMM keeps its runtime files: the API socket (api.sock), the
// console socket (console.sock), the serial log (serial.log) and its pid (pid).
// The folder is $XDG_RUNTIME_DIR/strata/<key> (or /tmp/strata-<uid>/<key> when
// XDG_RUNTIME_DIR is unset), where <key> is 16 hex digits of the SHA-256 of the
// store root and the VM name: short enough that the socket path fits the 108-byte
// limit of Unix sockets whatever $STRATA_HOME is, and distinct per store and VM.
// Threading: pure functions.
#pragma once

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

} // namespace strata
