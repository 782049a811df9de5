// A blocking API client for the CLI (`strata vms stop` sends SendCtrlAltDel,
// `strata machine-images create` sends PUT /machine-images to a running VM) and for
// tests: one request per connection ("Connection: close"), raw sockets, no Beast.
//
// A reply with any status is a success of the transport: the caller looks at
// `status` and, for 4xx/5xx, at fault_message(). The Result fails only when the
// exchange itself fails: no socket (NotFound), nobody listening (Io), a timeout
// (Busy), or a reply that is not HTTP (BadInput).
// Threading: no shared state; call from any thread.
#pragma once

#include "base/result.h"

#include <chrono>
#include <string>
#include <string_view>

namespace strata::api {

struct ApiResponse {
    unsigned status { 0 };
    std::string body; // JSON, or empty (204)

    // The server's {"fault_message": ...}, or the body itself if it has none.
    std::string fault_message() const;
};

// Sends `method target` with `json_body` (empty: no body) and waits up to `timeout`
// for the whole reply. A capture may take a while, hence the long default.
[[nodiscard]] Result<ApiResponse> api_request(std::string const& socket_path, std::string_view method, std::string_view target,
    std::string_view json_body = {}, std::chrono::milliseconds timeout = std::chrono::seconds(120));

} // namespace strata::api
