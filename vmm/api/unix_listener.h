// The API socket file: a listening Unix stream socket created with mode 0600, so only
// the VM's owner can talk to its VMM. Shared by the server (listening side) and the
// client (connecting side, connect_unix).
//
// An existing path is handled the way a VMM restart needs: a live socket (something
// accepts connections on it) is refused as Busy, a stale socket left by a killed VMM
// is removed, and anything else (a file, a directory) is refused as Exists and left
// alone.
//
// The file appears only once the socket listens (it is bound under a staging name in
// the same directory and renamed into place), so a client that waits for the path and
// connects at once is never refused.
// Threading: listen_unix() sets the process umask for the duration of bind(), which
// affects files other threads create at that instant; call it before starting
// threads that create files (the Machine does, at startup). connect_unix() is safe
// from any thread.
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <string>
#include <sys/types.h>

namespace strata::api {

struct UnixListener {
    Fd fd;           // listening, close-on-exec, blocking
    dev_t device {}; // the socket file's identity, so that remove_socket_file()
    ino_t inode {};  // removes only our own file, not a successor's
};

[[nodiscard]] Result<UnixListener> listen_unix(std::string const& path, int backlog = 16);

// Removes `path` if it is still the socket file `listener` created.
void remove_socket_file(std::string const& path, UnixListener const& listener);

// A blocking, close-on-exec stream socket connected to `path`.
[[nodiscard]] Result<Fd> connect_unix(std::string const& path);

} // namespace strata::api
