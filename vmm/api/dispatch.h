// The API's request handling without the transport: parse (request.h), check the
// request against the VM's state, call the VmController, and turn the outcome into a
// status code and a JSON body. The HTTP server (server.h) calls handle_request() for
// every complete request; tests call it directly.
//
// Replies follow Firecracker: 204 with no body for a successful PUT/PATCH, 200 with
// JSON for a GET, and errors as {"fault_message": "..."} with the status from
// status_for(). strata's own captures (PUT /snapshot/disks, PUT /machine-images)
// answer 200 with {"name": ..., "stall_us": ...} because the caller wants the stall.
// Threading: handle_request() calls the controller on the calling thread; the
// server calls it from its single worker thread (see controller.h).
#pragma once

#include "base/result.h"
#include "vmm/api/controller.h"

#include <string>
#include <string_view>

namespace strata::api {

struct HttpReply {
    unsigned status { 200 };
    std::string body; // JSON, or empty for 204
};

// Firecracker's messages for requests that do not fit the VM's state.
inline constexpr char const* not_supported_after_start = "The requested operation is not supported after starting the microVM.";
inline constexpr char const* not_supported_before_start = "The requested operation is not supported before starting the microVM.";

// Usage, BadInput, Unsupported -> 400; NotFound -> 404; Exists, Busy -> 409;
// Timeout (the guest agent did not answer) -> 504; other -> 500.
unsigned status_for(ErrorKind kind);

// {"fault_message": message}, with invalid UTF-8 from the client replaced.
std::string fault_body(std::string_view message);
HttpReply fault_reply(unsigned status, std::string_view message);

HttpReply handle_request(VmController& controller, std::string_view method, std::string_view target, std::string_view body);

// GET / "state" strings: "Not started", "Running", "Paused".
char const* vm_state_name(VmState state);

} // namespace strata::api
