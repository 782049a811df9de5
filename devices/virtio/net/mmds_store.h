// MmdsStore: a VM's metadata service (MMDS, as Firecracker names it): the JSON
// data store the VMM's API fills (PUT, PATCH and GET /mmds), the service's
// version and its session tokens, and the answer to one HTTP request from the
// guest (the TCP/IPv4 side is mmds_stack.h).
//
// What the guest sees (Firecracker's MMDS user guide, learned from, not copied):
// - GET /a/b/c looks the path up in the data store (an empty path is the root).
//   With "Accept: application/json" the value comes back as JSON; otherwise in
//   EC2's IMDS format: a string as itself, an object as its keys one a line
//   (an object's key ends in '/'); anything else is 501 in IMDS format.
//   Missing: 404.
// - PUT /latest/api/token with X-metadata-token-ttl-seconds (or
//   X-aws-ec2-metadata-token-ttl-seconds) 1..21600 and no X-Forwarded-For
//   returns a new session token (text). Under V2 a GET must carry a live token
//   in X-metadata-token (or X-aws-ec2-metadata-token), else 401; under V1 a
//   token is not needed, and a bad one is counted, not refused.
// - Any other method: 405 with "Allow: GET, PUT".
// The data store is a JSON object of at most MaxDataBytes serialized (PUT
// replaces it, PATCH merges into it by RFC 7396); a refused PUT or PATCH
// changes nothing. Tokens live in the store, so every interface of the VM
// accepts them; at most MaxTokens live at once (the oldest goes first).
//
// Threading: every method locks the store's mutex; the API's worker thread and
// the network devices' I/O threads call it concurrently.
#pragma once

#include "base/result.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace strata::virtio::net {

enum class MmdsVersion {
    V1, // tokens optional
    V2, // a GET needs a session token
};

// One request from the guest, as mmds_stack's HTTP parser read it.
struct MmdsRequest {
    std::string method;
    std::string path; // starts with '/', no query
    std::vector<std::pair<std::string, std::string>> headers; // names lower-cased

    std::string const* header(std::string_view name) const;
};

struct MmdsReply {
    unsigned status { 200 };
    std::string content_type { "text/plain" };
    std::string body;
    bool allow_header { false }; // 405: "Allow: GET, PUT"
};

struct MmdsCounters {
    std::uint64_t requests { 0 };
    std::uint64_t tokens_issued { 0 };
    std::uint64_t invalid_token { 0 }; // a GET whose token was unknown or expired
    std::uint64_t no_token { 0 };      // a GET without a token
};

class MmdsStore {
public:
    static constexpr std::size_t MaxDataBytes = 51200; // Firecracker's default limit
    static constexpr std::size_t MaxTokens = 1024;
    static constexpr std::uint64_t MaxTokenTtlS = 21600;

    [[nodiscard]] static std::shared_ptr<MmdsStore> create(MmdsVersion version = MmdsVersion::V1);

    // PUT /mmds: the JSON text of an object replaces the store.
    [[nodiscard]] Status put(std::string_view json_text);
    // PATCH /mmds: a JSON merge patch (an object) applied to the store.
    [[nodiscard]] Status patch(std::string_view json_text);
    // GET /mmds: the store as JSON text ("{}" when empty).
    std::string get() const;
    void set_version(MmdsVersion version);
    MmdsVersion version() const;

    // Answers one guest request; `now` is passed in for the tests' sake.
    MmdsReply answer(MmdsRequest const& request, std::chrono::steady_clock::time_point now);
    MmdsCounters counters() const;

private:
    MmdsStore(MmdsVersion version);
    struct Data;
    bool token_valid(std::string const& token, std::chrono::steady_clock::time_point now);

    mutable std::mutex m_mutex;
    std::unique_ptr<Data> m_data;
    MmdsVersion m_version;
    struct Token {
        std::string value;
        std::chrono::steady_clock::time_point expires;
    };
    std::deque<Token> m_tokens; // oldest first
    MmdsCounters m_counters;

public:
    ~MmdsStore();
};

std::string_view mmds_version_name(MmdsVersion version);

} // namespace strata::virtio::net
