// The agent's client of strata's metadata service (MMDS, Firecracker's shape;
// vmm/vm_config.h says what a stored VM's service serves), used when the kernel
// command line has no strata.meta= and the VM has a network interface:
//
// 1. waits for the first interface other than lo (a driver may still be
//    probing), brings it up with a temporary link-local address
//    (169.254.0.2/16, or .3 when the service is at .2) so the service's
//    address is on the link; an interface that already has an address (the
//    kernel's ip=) keeps it and gets a /32 route to the service instead;
// 2. asks for a session token (PUT /latest/api/token,
//    X-metadata-token-ttl-seconds: 60), as V2 requires and V1 allows; a
//    service that refuses it is read without one;
// 3. reads GET /strata as JSON ({"instance-id", "name", "metadata": {...}});
//    without that tree, GET /latest/meta-data (EC2's "instance-id" and
//    "local-hostname");
// 4. sets the interface's address from the metadata: `ipv4-address` (a.b.c.d/N)
//    and `ipv4-gateway` (a default route via it), with a /32 route to the
//    service so the guest can keep reading it; without ipv4-address the
//    temporary address is removed again and the link stays up (an address
//    that was there before stays).
//
// The metadata keys it reads are those strata.meta carries (hostname, user,
// ssh-authorized-keys with ';' between keys) plus the two address keys.
// Everything the service sends is hostile: a reply is at most MaxReplyBytes,
// JSON that is not the expected shape, or an address that does not parse, is an
// error and nothing is configured from it.
// Threading: single-threaded, through an Environment (environment.h).
#pragma once

#include "environment.h"
#include "provision.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace strata::agent {

inline constexpr std::uint32_t kMmdsDefaultAddress = 0xa9fea9fe; // 169.254.169.254
inline constexpr std::size_t kMaxMmdsReplyBytes = 64 * 1024;

struct MmdsOptions {
    std::uint32_t address { kMmdsDefaultAddress };
    // How long to wait for a network interface to appear, and for each request.
    std::chrono::milliseconds wait_for_interface { 10000 };
    std::chrono::milliseconds request_timeout { 3000 };
};

struct MmdsOutcome {
    std::optional<Metadata> metadata; // set when the service answered with usable metadata
    std::string iface;                // the interface it was read through
    std::string error;                // why there is no metadata, or what could not be applied
    std::vector<std::string> log;     // what was done, for the console
};

// Reads the metadata from the service and applies the address it names (steps 1-4).
MmdsOutcome fetch_mmds_metadata(Environment& env, MmdsOptions const& options);

// The metadata from the JSON text of GET /strata (or, with ec2 set, of GET
// /latest/meta-data); nullopt with `error` when it is not that shape.
std::optional<Metadata> metadata_from_mmds_json(std::string const& text, bool ec2, std::string& error);

// "a.b.c.d" to a host-order address; nullopt when it is not exactly that.
std::optional<std::uint32_t> parse_ipv4(std::string const& text);
// "a.b.c.d/N" (N 1..32); nullopt when it is not exactly that.
std::optional<std::pair<std::uint32_t, unsigned>> parse_ipv4_cidr(std::string const& text);
std::string format_ipv4(std::uint32_t address);

// An HTTP/1.x response as text (status line, headers, body): status and body
// (Content-Length honoured when given). Malformed: status 0 with an error.
HttpReply parse_http_reply(std::string const& text);
// The bytes of a request (Host and Connection: close added).
std::string format_http_request(HttpRequest const& request);

} // namespace strata::agent
