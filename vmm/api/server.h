// The API server: HTTP/1.1 over the VM's Unix socket (created mode 0600, see
// unix_listener.h), JSON in and out, handing each complete request to
// handle_request() (dispatch.h) and so to the VmController.
//
// Transport rules: keep-alive (HTTP/1.1 default; "Connection: close" and HTTP/1.0
// are honoured); header and body size limits (431 and 413, then the connection is
// closed because the rest of the stream cannot be trusted); a malformed request gets
// 400 "Malformed HTTP request" and a close. Before those closes the server reads and
// drops what the client still sends (up to 64 MiB, within read_timeout), so that a
// client busy sending its body sees its sends complete and reads the reply rather
// than failing with EPIPE. A handler that throws is logged and serving goes on. A
// connection that does not deliver a
// complete request within read_timeout of the previous response (or of connecting)
// is closed without a reply, which bounds both idle and slow (slowloris) clients; at
// most max_connections are open, more are closed at once. No error from a client
// stops the server or the VM.
// "Expect: 100-continue" is answered once the header has passed its checks.
//
// Threading: two private threads. The I/O thread runs an io_context with every
// socket; the worker thread runs the VmController calls one at a time, in the order
// requests complete, so a blocking call (a capture draining the disks) never stalls
// reading, timeouts or other connections, and requests from all connections are
// serialized (controller.h). start() and stop() from the owner's thread (the
// Machine's main thread); stop() closes the listener and every connection, waits for
// a controller call in progress to return, joins both threads and removes the
// socket file. The destructor calls stop(). Neither may run on the server's threads
// (a controller method must not stop the server it was called from).
#pragma once

#include "base/result.h"
#include "vmm/api/controller.h"
#include "vmm/api/request.h"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace strata::api {

struct ServerOptions {
    std::size_t max_header_bytes { 8 * 1024 };
    std::size_t max_body_bytes { api::max_body_bytes };
    std::chrono::milliseconds read_timeout { 30'000 };
    std::chrono::milliseconds write_timeout { 10'000 };
    std::size_t max_connections { 64 };
};

class ApiServer {
public:
    // Creates the socket file (refusing a live socket, removing a stale one),
    // then starts serving. The controller must outlive the server.
    [[nodiscard]] static Result<std::unique_ptr<ApiServer>> start(std::string socket_path, VmController& controller,
        ServerOptions options = {});
    ~ApiServer();
    ApiServer(ApiServer const&) = delete;
    ApiServer& operator=(ApiServer const&) = delete;

    void stop();
    std::string const& socket_path() const;

    struct Impl;

private:
    explicit ApiServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace strata::api
