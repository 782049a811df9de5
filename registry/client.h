// The registry/ folder: strata's client of OCI distribution registries (Docker
// Distribution, Harbor, Zot, GHCR, ECR) and the mapping of images and machine
// images onto OCI manifests and blobs (REGISTRY.md). It sits between cli/ and
// store/: it reads and records store objects through store/'s public API, and it
// is the only library of strata that links libcurl: the store never carries an
// HTTP stack, and the VMM does only to fetch lazily pulled chunks (lazy.h).
//
// RegistryClient: one repository on one registry, spoken to over HTTP(S) with
// libcurl. It owns the protocol details: the WWW-Authenticate challenge flow
// (Basic, and Bearer tokens fetched from the realm and cached per scope),
// retries with backoff on 429, 5xx and dropped connections, redirects (curl
// never sends the Authorization header to another host), chunked blob uploads,
// cross-repository mounts, resumable blob downloads verified against their
// digest, and the registry's JSON errors turned into strata Errors.
//
// Errors: 401/403 -> Permission, 404 -> NotFound, a digest or size that does not
// match -> BadInput, a registry that cannot be reached or keeps failing ->
// Unavailable, a transfer cut short -> Io.
//
// Threading: a client is used by one thread at a time.
#pragma once

#include "base/result.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::registry {

// host[:port]/path/to/repo[:tag][@sha256:hex]; with neither tag nor digest, "latest".
struct Reference {
    std::string registry;   // host[:port]
    std::string repository; // path components, lower case
    std::string tag;
    std::string digest;     // "sha256:<64 hex>" when pinned
    // The tag or digest for /manifests/<...>: the digest when both are given.
    std::string target() const { return digest.empty() ? tag : digest; }
    std::string to_string() const;
};
[[nodiscard]] Result<Reference> parse_reference(std::string_view text);

struct Credentials {
    std::string user;
    std::string password;
};

// Credentials for a registry: `explicit_creds` ("user:password") first, then
// $STRATA_REGISTRY_CREDS (the same form), then the "auths" of a Docker-style
// config.json ($STRATA_REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json) for that registry.
[[nodiscard]] Result<std::optional<Credentials>> find_credentials(std::string const& registry, std::string const& explicit_creds);

struct ClientOptions {
    std::optional<Credentials> credentials;
    // Plain HTTP for this registry (the user named it with --insecure); HTTPS with
    // the system's CAs otherwise.
    bool plain_http { false };
    unsigned max_attempts { 5 };             // per request, for 429/5xx/dropped connections
    unsigned backoff_ms { 200 };             // first wait; doubles each time, capped at 5 s
    std::uint64_t upload_chunk { 64 << 20 }; // bytes per PATCH of a chunked upload
    // HTTPS: a PEM file of CA certificates trusted for this registry (besides
    // none: it replaces the system's CAs, as curl's --cacert does), and whether
    // the registry's certificate is verified at all (skopeo's --tls-verify=false).
    std::string ca_cert;
    bool tls_verify { true };
    // A connection attempt gives up after connect_timeout_s; a transfer that
    // moves under 1 KiB/s for stall_timeout_s has dropped. (Lazy fetches, which
    // a guest's read waits for, use short ones.)
    long connect_timeout_s { 30 };
    long stall_timeout_s { 60 };
};

// What a transfer did, for the CLI's summary and the tests.
struct TransferStats {
    std::uint64_t blobs_uploaded { 0 };
    std::uint64_t blobs_skipped { 0 };   // the registry had them (HEAD) or mounted them
    std::uint64_t blobs_mounted { 0 };
    std::uint64_t bytes_uploaded { 0 };
    std::uint64_t blobs_downloaded { 0 };
    std::uint64_t bytes_downloaded { 0 };
    std::uint64_t layers_reused { 0 };   // pull: layers the store already had
};

struct Manifest {
    std::string media_type;
    std::string digest; // of the bytes
    std::string bytes;
};

class RegistryClient {
public:
    [[nodiscard]] static Result<std::unique_ptr<RegistryClient>> create(Reference const& ref, ClientOptions options);
    ~RegistryClient();

    Reference const& reference() const { return m_ref; }
    // Another client of the same repository with its own connection and the
    // credentials and tokens this one has gathered (a pull's parallel fetches).
    [[nodiscard]] Result<std::unique_ptr<RegistryClient>> clone() const;

    // HEAD /v2/<repo>/blobs/<digest>: its size when the registry has it.
    [[nodiscard]] Result<std::optional<std::uint64_t>> blob_size(std::string const& digest);
    // Asks the registry to mount digest from another repository; false when it
    // started an ordinary upload instead (which is abandoned).
    [[nodiscard]] Result<bool> mount_blob(std::string const& digest, std::string const& from_repository);
    // Uploads the file's bytes (chunked PATCHes, then PUT with the digest).
    [[nodiscard]] Status upload_blob_file(std::string const& path, std::string const& digest, TransferStats& stats);
    [[nodiscard]] Status upload_blob_bytes(std::string_view bytes, std::string const& digest, TransferStats& stats);
    // Downloads a blob to path, resuming a partial path with a Range request,
    // and checks its size and SHA-256; a mismatch removes the file.
    [[nodiscard]] Status download_blob(std::string const& digest, std::uint64_t size, std::string const& path, TransferStats& stats);
    // Bytes [offset, offset + length) of a blob (a Range request), unchecked:
    // the caller verifies them (lazy pulls check each chunk's SHA-256).
    [[nodiscard]] Result<std::string> fetch_range(std::string const& digest, std::uint64_t offset, std::uint64_t length);
    // Small blobs (configs) in memory, checked the same way.
    [[nodiscard]] Result<std::string> fetch_blob(std::string const& digest, std::uint64_t max_size);

    [[nodiscard]] Result<Manifest> get_manifest(std::string const& target);
    // PUT /v2/<repo>/manifests/<target>; returns the manifest's digest.
    [[nodiscard]] Result<std::string> put_manifest(std::string const& target, std::string const& media_type, std::string const& bytes);

    struct Request;
    struct Response;

private:
    RegistryClient() = default;
    [[nodiscard]] Result<Response> send(Request& request);
    [[nodiscard]] Result<Response> send_once(Request& request, std::string const& authorization);
    [[nodiscard]] Status authenticate(std::string const& challenge, std::string const& scope);
    std::string url(std::string const& path_or_url) const;
    std::string scope(bool push) const;

    Reference m_ref;
    ClientOptions m_options;
    void* m_curl { nullptr };
    std::map<std::string, std::string> m_tokens; // scope -> "Bearer <token>" or "Basic <...>"
    std::string m_basic;                         // set once the registry asked for Basic
};

// "sha256:<hex>" of bytes.
std::string digest_of(std::string_view bytes);

} // namespace strata::registry
