#include "registry/client.h"

#include "base/fd.h"
#include "base/sha256.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace strata::registry {

using nlohmann::json;

namespace {

bool valid_hex_digest(std::string_view d)
{
    if (d.size() != 71 || d.substr(0, 7) != "sha256:")
        return false;
    return std::all_of(d.begin() + 7, d.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string base64(std::string_view in)
{
    static char const* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    auto u = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(in[k])); };
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = u(i) << 16 | u(i + 1) << 8 | u(i + 2);
        out += { t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63] };
    }
    if (i + 1 == in.size()) {
        unsigned v = u(i) << 16;
        out += { t[v >> 18], t[(v >> 12) & 63], '=', '=' };
    } else if (i + 2 == in.size()) {
        unsigned v = u(i) << 16 | u(i + 1) << 8;
        out += { t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '=' };
    }
    return out;
}

std::optional<std::string> unbase64(std::string_view in)
{
    std::string out;
    unsigned v = 0;
    int bits = 0;
    for (char c : in) {
        int d;
        if (c >= 'A' && c <= 'Z') d = c - 'A';
        else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
        else if (c >= '0' && c <= '9') d = c - '0' + 52;
        else if (c == '+') d = 62;
        else if (c == '/') d = 63;
        else if (c == '=') break;
        else return std::nullopt;
        v = (v << 6) | static_cast<unsigned>(d);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((v >> bits) & 0xff);
        }
    }
    return out;
}

std::string url_escape(std::string_view s)
{
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' || c == ':') {
            out += static_cast<char>(c);
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

std::optional<Credentials> split_creds(std::string_view s)
{
    auto colon = s.find(':');
    if (colon == std::string_view::npos)
        return std::nullopt;
    return Credentials { std::string(s.substr(0, colon)), std::string(s.substr(colon + 1)) };
}

// Parameters of one WWW-Authenticate challenge: scheme, then key="value" pairs.
struct Challenge {
    std::string scheme;
    std::map<std::string, std::string> params;
};

Challenge parse_challenge(std::string_view h)
{
    Challenge c;
    std::size_t i = 0;
    while (i < h.size() && h[i] != ' ')
        c.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(h[i++])));
    while (i < h.size()) {
        while (i < h.size() && (h[i] == ' ' || h[i] == ','))
            ++i;
        std::string key;
        while (i < h.size() && h[i] != '=')
            key += static_cast<char>(std::tolower(static_cast<unsigned char>(h[i++])));
        if (i >= h.size())
            break;
        ++i;
        std::string value;
        if (i < h.size() && h[i] == '"') {
            ++i;
            while (i < h.size() && h[i] != '"') {
                if (h[i] == '\\' && i + 1 < h.size())
                    ++i;
                value += h[i++];
            }
            ++i;
        } else {
            while (i < h.size() && h[i] != ',')
                value += h[i++];
        }
        c.params[key] = value;
    }
    return c;
}

struct CurlInit {
    CurlInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

} // namespace

std::string digest_of(std::string_view bytes)
{
    return "sha256:" + sha256_hex(sha256_bytes(std::as_bytes(std::span(bytes.data(), bytes.size()))));
}

std::string Reference::to_string() const
{
    std::string s = registry + "/" + repository;
    if (!tag.empty())
        s += ":" + tag;
    if (!digest.empty())
        s += "@" + digest;
    return s;
}

Result<Reference> parse_reference(std::string_view text)
{
    auto bad = [&](std::string const& why) {
        return make_error(ErrorKind::Usage, "reference '" + std::string(text.substr(0, 200)) + "': " + why);
    };
    if (text.empty() || text.size() > 1024)
        return bad("must be 1 to 1024 characters");
    Reference r;
    std::string_view rest = text;
    if (auto at = rest.find('@'); at != std::string_view::npos) {
        r.digest = std::string(rest.substr(at + 1));
        rest = rest.substr(0, at);
        if (!valid_hex_digest(r.digest))
            return bad("a digest is sha256: and 64 lower-case hex digits");
    }
    auto slash = rest.find('/');
    if (slash == std::string_view::npos)
        return bad("name the registry: HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]");
    r.registry = std::string(rest.substr(0, slash));
    rest = rest.substr(slash + 1);
    if (r.registry.find_first_of(".:") == std::string::npos && r.registry != "localhost")
        return bad("'" + r.registry + "' is not a registry host (it needs a '.', a ':port' or to be localhost)");
    for (char c : r.registry)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return bad("the registry host holds a character that no host name has");
    if (auto colon = rest.rfind(':'); colon != std::string_view::npos && rest.find('/', colon) == std::string_view::npos) {
        r.tag = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
        if (r.tag.empty() || r.tag.size() > 128 || !(std::isalnum(static_cast<unsigned char>(r.tag[0])) || r.tag[0] == '_'))
            return bad("a tag is 1 to 128 characters starting with a letter, digit or '_'");
        for (char c : r.tag)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
                return bad("a tag holds only letters, digits, '_', '.' and '-'");
    }
    r.repository = std::string(rest);
    if (r.repository.empty() || r.repository.size() > 255)
        return bad("the repository is 1 to 255 characters");
    char prev = '/';
    for (char c : r.repository) {
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool sep = c == '.' || c == '_' || c == '-' || c == '/';
        if (!alnum && !sep)
            return bad("a repository holds only lower-case letters, digits and '._-/'");
        if (sep && (prev == '/' || (c == '/' && !std::isalnum(static_cast<unsigned char>(prev)))))
            return bad("each repository component starts and ends with a letter or digit");
        prev = c;
    }
    if (prev == '/' || prev == '.' || prev == '_' || prev == '-')
        return bad("each repository component starts and ends with a letter or digit");
    if (r.tag.empty() && r.digest.empty())
        r.tag = "latest";
    return r;
}

Result<std::optional<Credentials>> find_credentials(std::string const& registry, std::string const& explicit_creds)
{
    if (!explicit_creds.empty()) {
        auto c = split_creds(explicit_creds);
        if (!c)
            return make_error(ErrorKind::Usage, "--creds is USER:PASSWORD");
        return std::optional<Credentials>(*c);
    }
    if (char const* env = ::getenv("STRATA_REGISTRY_CREDS"); env != nullptr && *env != '\0') {
        auto c = split_creds(env);
        if (!c)
            return make_error(ErrorKind::Usage, "STRATA_REGISTRY_CREDS is USER:PASSWORD");
        return std::optional<Credentials>(*c);
    }
    std::string path;
    if (char const* f = ::getenv("STRATA_REGISTRY_AUTH_FILE"); f != nullptr && *f != '\0')
        path = f;
    else if (char const* d = ::getenv("DOCKER_CONFIG"); d != nullptr && *d != '\0')
        path = std::string(d) + "/config.json";
    else if (char const* h = ::getenv("HOME"); h != nullptr)
        path = std::string(h) + "/.docker/config.json";
    if (path.empty())
        return std::optional<Credentials>();
    std::ifstream in(path);
    if (!in)
        return std::optional<Credentials>();
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return make_error(ErrorKind::BadInput, "credentials file '" + path + "' is not a JSON object");
    auto auths = j.find("auths");
    if (auths == j.end() || !auths->is_object())
        return std::optional<Credentials>();
    for (auto const& key : { registry, "https://" + registry, "http://" + registry }) {
        auto e = auths->find(key);
        if (e == auths->end() || !e->is_object())
            continue;
        if (auto a = e->find("auth"); a != e->end() && a->is_string()) {
            auto decoded = unbase64(a->get<std::string>());
            auto c = decoded ? split_creds(*decoded) : std::nullopt;
            if (!c)
                return make_error(ErrorKind::BadInput, "credentials file '" + path + "': the auth of '" + key + "' is not base64 of USER:PASSWORD");
            return std::optional<Credentials>(*c);
        }
        auto u = e->find("username"), p = e->find("password");
        if (u != e->end() && p != e->end() && u->is_string() && p->is_string())
            return std::optional<Credentials>(Credentials { u->get<std::string>(), p->get<std::string>() });
    }
    return std::optional<Credentials>();
}

struct RegistryClient::Request {
    std::string method { "GET" };
    std::string target; // a path under the registry, or an absolute URL (upload locations)
    std::vector<std::string> headers;
    bool push { false };          // needs the push scope
    std::string_view body;        // in memory, or:
    int body_fd { -1 };
    std::uint64_t body_offset { 0 };
    std::uint64_t body_length { 0 };
    std::string* out { nullptr }; // a 2xx body in memory (bounded by out_limit), or:
    int out_fd { -1 };            // written at out_offset onward
    std::uint64_t out_offset { 0 };
    std::uint64_t out_limit { 1 << 20 };
    std::uint64_t written { 0 };  // to out_fd in this attempt
    bool overflow { false };
    // Hashes what is written to out_fd while it arrives in order, so a download
    // is not read back a second time to check its digest (see download_blob).
    Sha256Hasher* hash { nullptr };
    std::uint64_t* hashed { nullptr }; // bytes of the file the hash covers
};

struct RegistryClient::Response {
    long status { 0 };
    std::map<std::string, std::string> headers; // lower-case names, of the final response
    std::string error_body;

    std::string header(std::string const& name) const
    {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

namespace {

struct Transfer {
    RegistryClient::Request* req;
    RegistryClient::Response* resp;
    CURL* curl;
    std::uint64_t sent { 0 };
};

size_t on_header(char* data, size_t size, size_t n, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    std::string_view line(data, size * n);
    if (line.substr(0, 5) == "HTTP/") {
        t->resp->headers.clear();
        return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
        return size * n;
    std::string name;
    for (char c : line.substr(0, colon))
        name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
        v.remove_suffix(1);
    t->resp->headers[name] = std::string(v);
    return size * n;
}

size_t on_write(char* data, size_t size, size_t n, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    std::size_t len = size * n;
    if (status < 200 || status >= 300) {
        if (t->resp->error_body.size() < 65536)
            t->resp->error_body.append(data, std::min<std::size_t>(len, 65536 - t->resp->error_body.size()));
        return len;
    }
    auto& r = *t->req;
    if (r.out_fd >= 0) {
        std::uint64_t at = r.out_offset + r.written;
        if (!pwrite_all(r.out_fd, std::as_bytes(std::span(data, len)), at))
            return 0;
        if (r.hash != nullptr && *r.hashed == at) {
            r.hash->update(data, len);
            *r.hashed += len;
        }
        r.written += len;
        return len;
    }
    if (r.out != nullptr) {
        if (r.out->size() + len > r.out_limit) {
            r.overflow = true;
            return 0;
        }
        r.out->append(data, len);
    }
    return len;
}

size_t on_read(char* buf, size_t size, size_t n, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    auto& r = *t->req;
    std::uint64_t total = r.body_fd >= 0 ? r.body_length : r.body.size();
    std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(size * n, total - t->sent));
    if (len == 0)
        return 0;
    if (r.body_fd >= 0) {
        if (!pread_all(r.body_fd, std::as_writable_bytes(std::span(buf, len)), r.body_offset + t->sent))
            return CURL_READFUNC_ABORT;
    } else {
        std::memcpy(buf, r.body.data() + t->sent, len);
    }
    t->sent += len;
    return len;
}

// The registry's JSON errors ({"errors": [{"code", "message", "detail"}]}) as one sentence.
std::string registry_errors(std::string const& body)
{
    json j = json::parse(body, nullptr, false);
    std::string out;
    if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
        for (auto const& e : j["errors"]) {
            if (!e.is_object())
                continue;
            std::string code = e.value("code", std::string());
            std::string msg = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
            if (!out.empty())
                out += "; ";
            out += code + (msg.empty() ? "" : ": " + msg);
        }
    }
    return out;
}

} // namespace

Result<std::unique_ptr<RegistryClient>> RegistryClient::create(Reference const& ref, ClientOptions options)
{
    static CurlInit init;
    std::unique_ptr<RegistryClient> c(new RegistryClient());
    c->m_ref = ref;
    c->m_options = std::move(options);
    c->m_curl = curl_easy_init();
    if (c->m_curl == nullptr)
        return make_error(ErrorKind::Internal, "libcurl could not make a handle");
    return c;
}

Result<std::unique_ptr<RegistryClient>> RegistryClient::clone() const
{
    STRATA_TRY(c, create(m_ref, m_options));
    c->m_tokens = m_tokens;
    c->m_basic = m_basic;
    return c;
}

RegistryClient::~RegistryClient()
{
    if (m_curl != nullptr)
        curl_easy_cleanup(static_cast<CURL*>(m_curl));
}

std::string RegistryClient::url(std::string const& target) const
{
    if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0)
        return target;
    return std::string(m_options.plain_http ? "http://" : "https://") + m_ref.registry + target;
}

std::string RegistryClient::scope(bool push) const
{
    return "repository:" + m_ref.repository + (push ? ":pull,push" : ":pull");
}

Result<RegistryClient::Response> RegistryClient::send_once(Request& req, std::string const& authorization)
{
    auto* curl = static_cast<CURL*>(m_curl);
    curl_easy_reset(curl);
    Response resp;
    Transfer t { &req, &resp, curl };
    req.written = 0;
    req.overflow = false;
    if (req.out != nullptr)
        req.out->clear();
    std::string u = url(req.target);
    curl_easy_setopt(curl, CURLOPT_URL, u.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, m_options.plain_http ? "http,https" : "https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, m_options.plain_http ? "http,https" : "https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, req.method == "GET" || req.method == "HEAD" ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    // Authorization is never sent to another host after a redirect (curl's
    // default, kept explicit: blob downloads redirect to storage backends).
    curl_easy_setopt(curl, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, m_options.connect_timeout_s);
    // A connection that moves less than 1 KiB/s for stall_timeout_s has dropped.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, m_options.stall_timeout_s);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "strata");
    // Large receive buffers: blob downloads are the bulk of a pull.
    curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
    if (!m_options.ca_cert.empty())
        curl_easy_setopt(curl, CURLOPT_CAINFO, m_options.ca_cert.c_str());
    if (!m_options.tls_verify) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    struct curl_slist* headers = nullptr;
    for (auto const& h : req.headers)
        headers = curl_slist_append(headers, h.c_str());
    if (!authorization.empty())
        headers = curl_slist_append(headers, ("Authorization: " + authorization).c_str());
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    std::uint64_t body_len = req.body_fd >= 0 ? req.body_length : req.body.size();
    if (req.method == "HEAD") {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (req.method == "GET") {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_len));
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, &t);
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (req.overflow)
        return make_error(ErrorKind::BadInput, "the registry's answer to " + req.method + " " + req.target + " is larger than "
                + std::to_string(req.out_limit) + " bytes");
    if (rc != CURLE_OK) {
        std::string what = req.method + " " + u + ": " + curl_easy_strerror(rc);
        switch (rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
            return make_error(ErrorKind::Unavailable, "cannot reach the registry: " + what);
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
            return make_error(ErrorKind::Unavailable, "TLS with the registry failed (for a plain-HTTP registry use --insecure): " + what);
        case CURLE_UNSUPPORTED_PROTOCOL:
            return make_error(ErrorKind::Permission, "refused to follow a redirect to another protocol: " + what);
        case CURLE_PARTIAL_FILE:
            return make_error(ErrorKind::Io, "the registry's answer arrived truncated (the connection dropped): " + what);
        case CURLE_WRITE_ERROR:
            return make_error(ErrorKind::Io, "writing what the registry sent failed: " + what);
        default:
            return make_error(ErrorKind::Io, "the connection to the registry failed: " + what);
        }
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
}

Status RegistryClient::authenticate(std::string const& header, std::string const& want_scope)
{
    if (header.empty())
        return make_error(ErrorKind::Permission, "the registry refused the request (401) without saying how to authenticate");
    Challenge c = parse_challenge(header);
    auto const& creds = m_options.credentials;
    if (c.scheme == "basic") {
        if (!creds)
            return make_error(ErrorKind::Permission, "the registry " + m_ref.registry + " needs credentials (--creds, STRATA_REGISTRY_CREDS or config.json)");
        m_basic = "Basic " + base64(creds->user + ":" + creds->password);
        return ok();
    }
    if (c.scheme != "bearer")
        return make_error(ErrorKind::Unsupported, "the registry asks for '" + c.scheme + "' authentication, which strata does not speak");
    auto realm = c.params["realm"];
    if (realm.rfind("https://", 0) != 0 && !(m_options.plain_http && realm.rfind("http://", 0) == 0))
        return make_error(ErrorKind::Permission, "the registry's token realm '" + realm + "' is not HTTPS (use --insecure for a plain-HTTP registry and its token server)");
    std::string token_url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    if (!c.params["service"].empty())
        token_url += "service=" + url_escape(c.params["service"]) + "&";
    token_url += "scope=" + url_escape(c.params.count("scope") != 0 ? c.params["scope"] : want_scope);
    Request req;
    req.target = token_url;
    std::string body;
    req.out = &body;
    req.out_limit = 1 << 20;
    STRATA_TRY(resp, send_once(req, creds ? "Basic " + base64(creds->user + ":" + creds->password) : std::string()));
    if (resp.status == 401 || resp.status == 403)
        return make_error(ErrorKind::Permission, "the token server refused the credentials for " + m_ref.registry
                + (creds ? "" : " (none were given: --creds, STRATA_REGISTRY_CREDS or config.json)"));
    if (resp.status != 200)
        return make_error(ErrorKind::Unavailable, "the token server answered " + std::to_string(resp.status));
    json j = json::parse(body, nullptr, false);
    std::string token;
    if (j.is_object()) {
        if (j.contains("token") && j["token"].is_string())
            token = j["token"].get<std::string>();
        else if (j.contains("access_token") && j["access_token"].is_string())
            token = j["access_token"].get<std::string>();
    }
    if (token.empty() || token.size() > 65536)
        return make_error(ErrorKind::BadInput, "the token server's answer holds no token");
    m_tokens[want_scope] = "Bearer " + token;
    return ok();
}

Result<RegistryClient::Response> RegistryClient::send(Request& req)
{
    std::string sc = scope(req.push);
    bool authenticated = false;
    unsigned wait = m_options.backoff_ms;
    for (unsigned attempt = 1;; ++attempt) {
        std::string auth;
        if (auto it = m_tokens.find(sc); it != m_tokens.end())
            auth = it->second;
        else
            auth = m_basic;
        // Absolute URLs (upload locations) may name another host: they get the
        // registry's Authorization only when they are on the registry itself.
        if (req.target.rfind("http", 0) == 0 && req.target.rfind(url("/"), 0) != 0)
            auth.clear();
        auto r = send_once(req, auth);
        bool retry = false;
        if (!r) {
            // A download that already wrote bytes is resumed by its caller.
            retry = (r.error().kind == ErrorKind::Io || r.error().kind == ErrorKind::Unavailable) && req.written == 0;
            if (!retry || attempt >= m_options.max_attempts)
                return r.error();
        } else if (r.value().status == 401 && authenticated) {
            std::string said = registry_errors(r.value().error_body);
            return make_error(ErrorKind::Permission, req.method + " " + req.target + ": the registry " + m_ref.registry
                    + " refused the credentials" + (m_options.credentials ? " of user '" + m_options.credentials->user + "'" : "")
                    + (said.empty() ? "" : " (" + said + ")"));
        } else if (r.value().status == 401) {
            STRATA_TRY(authenticate(r.value().header("www-authenticate"), sc));
            authenticated = true;
            continue;
        } else if ((r.value().status == 429 || r.value().status >= 500) && attempt < m_options.max_attempts) {
            retry = true;
            auto after = r.value().header("retry-after");
            if (!after.empty() && std::all_of(after.begin(), after.end(), ::isdigit) && after.size() < 4)
                wait = std::max<unsigned>(wait, static_cast<unsigned>(std::min<unsigned long>(std::stoul(after) * 1000, 30000)));
        }
        if (!retry)
            return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(wait));
        wait = std::min(wait * 2, 5000U);
    }
}

// A failed response as an Error, with the registry's own words.
static Error http_error(std::string const& what, RegistryClient::Response const& r)
{
    std::string said = registry_errors(r.error_body);
    std::string msg = what + ": the registry answered " + std::to_string(r.status) + (said.empty() ? "" : " (" + said + ")");
    ErrorKind kind = ErrorKind::Unavailable;
    if (r.status == 401 || r.status == 403)
        kind = ErrorKind::Permission;
    else if (r.status == 404)
        kind = ErrorKind::NotFound;
    else if (r.status == 400 || r.status == 413 || r.status == 416 || r.status == 422)
        kind = ErrorKind::BadInput;
    else if (r.status == 405)
        kind = ErrorKind::Unsupported;
    return make_error(kind, msg);
}

Result<std::optional<std::uint64_t>> RegistryClient::blob_size(std::string const& digest)
{
    Request req;
    req.method = "HEAD";
    req.target = "/v2/" + m_ref.repository + "/blobs/" + digest;
    STRATA_TRY(r, send(req));
    if (r.status == 404)
        return std::optional<std::uint64_t>();
    if (r.status != 200)
        return http_error("HEAD blob " + digest, r);
    auto len = r.header("content-length");
    std::uint64_t n = 0;
    if (len.empty() || len.size() > 19 || !std::all_of(len.begin(), len.end(), ::isdigit))
        return make_error(ErrorKind::BadInput, "the registry's HEAD of blob " + digest + " has no Content-Length");
    n = std::stoull(len);
    return std::optional<std::uint64_t>(n);
}

Result<bool> RegistryClient::mount_blob(std::string const& digest, std::string const& from)
{
    Request req;
    req.method = "POST";
    req.push = true;
    req.target = "/v2/" + m_ref.repository + "/blobs/uploads/?mount=" + url_escape(digest) + "&from=" + url_escape(from);
    STRATA_TRY(r, send(req));
    if (r.status == 201)
        return true;
    if (r.status == 202) {
        // The registry started an upload instead: abandon it.
        Request del;
        del.method = "DELETE";
        del.push = true;
        del.target = r.header("location");
        if (!del.target.empty())
            (void)send(del);
        return false;
    }
    return http_error("mount blob " + digest, r);
}

namespace {
// Upload locations may be relative to the registry.
std::string absolute(std::string const& location, std::string const& base)
{
    if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0)
        return location;
    return base + location;
}
} // namespace

static Status upload(RegistryClient& client, std::function<Result<RegistryClient::Response>(RegistryClient::Request&)> const& send,
    std::string const& base, std::string const& repo, std::string const& digest, int fd, std::string_view bytes,
    std::uint64_t length, std::uint64_t chunk, TransferStats& stats)
{
    (void)client;
    RegistryClient::Request start;
    start.method = "POST";
    start.push = true;
    start.target = "/v2/" + repo + "/blobs/uploads/";
    STRATA_TRY(r, send(start));
    if (r.status != 202)
        return http_error("start upload of " + digest, r);
    std::string location = absolute(r.header("location"), base);
    for (std::uint64_t off = 0; off < length;) {
        std::uint64_t n = std::min(chunk, length - off);
        RegistryClient::Request patch;
        patch.method = "PATCH";
        patch.push = true;
        patch.target = location;
        patch.headers = { "Content-Type: application/octet-stream",
            "Content-Range: " + std::to_string(off) + "-" + std::to_string(off + n - 1) };
        if (fd >= 0) {
            patch.body_fd = fd;
            patch.body_offset = off;
            patch.body_length = n;
        } else {
            patch.body = bytes.substr(off, n);
        }
        STRATA_TRY(pr, send(patch));
        if (pr.status != 202)
            return http_error("upload of " + digest + " at byte " + std::to_string(off), pr);
        location = absolute(pr.header("location"), base);
        off += n;
        stats.bytes_uploaded += n;
    }
    RegistryClient::Request put;
    put.method = "PUT";
    put.push = true;
    put.target = location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + url_escape(digest);
    put.headers = { "Content-Type: application/octet-stream" };
    STRATA_TRY(fr, send(put));
    if (fr.status != 201)
        return http_error("finish upload of " + digest, fr);
    ++stats.blobs_uploaded;
    return ok();
}

Status RegistryClient::upload_blob_file(std::string const& path, std::string const& digest, TransferStats& stats)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0)
        return errno_error("open '" + path + "'");
    return upload(*this, [this](Request& r) { return send(r); }, url(""), m_ref.repository, digest, fd.get(), {},
        static_cast<std::uint64_t>(st.st_size), m_options.upload_chunk, stats);
}

Status RegistryClient::upload_blob_bytes(std::string_view bytes, std::string const& digest, TransferStats& stats)
{
    return upload(*this, [this](Request& r) { return send(r); }, url(""), m_ref.repository, digest, -1, bytes, bytes.size(),
        m_options.upload_chunk, stats);
}

Status RegistryClient::download_blob(std::string const& digest, std::uint64_t size, std::string const& path, TransferStats& stats)
{
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd.valid())
        return errno_error("open '" + path + "'");
    // Two pulls into one store must not write one partial blob at once.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
        return make_error(ErrorKind::Busy, "blob " + digest + " is being downloaded by another strata process");
    // The digest is computed while the bytes arrive; what a resumed pull already
    // had is hashed first. Only if the bytes did not arrive in order (a registry
    // that ignored a Range) is the file read back once more at the end.
    Sha256Hasher hash;
    std::uint64_t hashed = 0;
    unsigned wait = m_options.backoff_ms;
    for (unsigned attempt = 1;; ++attempt) {
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0)
            return errno_error("stat '" + path + "'");
        auto have = static_cast<std::uint64_t>(st.st_size);
        if (have > size) {
            if (::ftruncate(fd.get(), 0) != 0)
                return errno_error("truncate '" + path + "'");
            have = 0;
        }
        if (hashed > have) {
            hash = Sha256Hasher();
            hashed = 0;
        }
        if (hashed < have) {
            std::vector<std::byte> buf(1 << 20);
            while (hashed < have) {
                auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), have - hashed));
                STRATA_TRY(pread_all(fd.get(), std::span(buf).first(n), hashed));
                hash.update(buf.data(), n);
                hashed += n;
            }
        }
        if (have == size)
            break;
        Request req;
        req.target = "/v2/" + m_ref.repository + "/blobs/" + digest;
        req.out_fd = fd.get();
        req.out_offset = have;
        req.hash = &hash;
        req.hashed = &hashed;
        if (have > 0)
            req.headers.push_back("Range: bytes=" + std::to_string(have) + "-");
        auto r = send(req);
        stats.bytes_downloaded += req.written;
        if (r && r.value().status == 200 && have > 0) {
            // The registry ignored the Range: it sent the blob from its start.
            if (::ftruncate(fd.get(), static_cast<off_t>(req.written)) != 0)
                return errno_error("truncate '" + path + "'");
            hash = Sha256Hasher();
            hashed = 0;
        } else if (r && r.value().status != 200 && r.value().status != 206) {
            return http_error("GET blob " + digest, r.value());
        } else if (!r && (r.error().kind != ErrorKind::Io || (req.written == 0 && have == 0))) {
            return r.error().context("GET blob " + digest);
        }
        std::string last = r ? std::string() : " (last: " + r.error().message + ")";
        if (::fstat(fd.get(), &st) != 0)
            return errno_error("stat '" + path + "'");
        if (static_cast<std::uint64_t>(st.st_size) == size)
            break;
        if (static_cast<std::uint64_t>(st.st_size) > size) {
            ::ftruncate(fd.get(), 0);
            return make_error(ErrorKind::BadInput, "blob " + digest + " is larger than its manifest says (" + std::to_string(size) + " bytes)");
        }
        if (attempt >= m_options.max_attempts)
            return make_error(ErrorKind::Io, "blob " + digest + " arrived truncated: " + std::to_string(st.st_size) + " of "
                    + std::to_string(size) + " bytes after " + std::to_string(attempt) + " attempts" + last);
        std::this_thread::sleep_for(std::chrono::milliseconds(wait));
        wait = std::min(wait * 2, 5000U);
    }
    // Verify the whole file against its digest: the hash taken on the way in,
    // or the file read back if the bytes did not all arrive in order.
    if (hashed != size) {
        hash = Sha256Hasher();
        std::vector<std::byte> buf(1 << 20);
        for (std::uint64_t off = 0; off < size;) {
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - off));
            STRATA_TRY(pread_all(fd.get(), std::span(buf).first(n), off));
            hash.update(buf.data(), n);
            off += n;
        }
    }
    std::string got = "sha256:" + sha256_hex(hash.finish());
    if (got != digest) {
        ::unlink(path.c_str());
        return make_error(ErrorKind::BadInput, "blob " + digest + " from the registry has digest " + got + ": refused");
    }
    ++stats.blobs_downloaded;
    return ok();
}

Result<std::string> RegistryClient::fetch_range(std::string const& digest, std::uint64_t offset, std::uint64_t length)
{
    if (length == 0)
        return std::string();
    Request req;
    req.target = "/v2/" + m_ref.repository + "/blobs/" + digest;
    req.headers = { "Range: bytes=" + std::to_string(offset) + "-" + std::to_string(offset + length - 1) };
    std::string body;
    body.reserve(static_cast<std::size_t>(length));
    req.out = &body;
    // A registry that ignores Range would send the whole blob: bounded here,
    // refused below.
    req.out_limit = length;
    auto r = send(req);
    if (!r)
        return r.error().context("GET bytes " + std::to_string(offset) + "+" + std::to_string(length) + " of blob " + digest);
    if (r.value().status == 416)
        return make_error(ErrorKind::BadInput, "blob " + digest + " in the registry ends before byte " + std::to_string(offset + length)
                + ", where its manifest and index say it goes on (truncated): refused");
    if (r.value().status != 206 && !(r.value().status == 200 && offset == 0))
        return r.value().status == 200 ? make_error(ErrorKind::Unsupported, "the registry does not answer Range requests for blob " + digest)
                                       : http_error("GET bytes of blob " + digest, r.value());
    if (body.size() != length)
        return make_error(ErrorKind::Io, "the registry sent " + std::to_string(body.size()) + " of " + std::to_string(length)
                + " bytes asked of blob " + digest);
    return body;
}

Result<std::string> RegistryClient::fetch_blob(std::string const& digest, std::uint64_t max_size)
{
    Request req;
    req.target = "/v2/" + m_ref.repository + "/blobs/" + digest;
    std::string body;
    req.out = &body;
    req.out_limit = max_size;
    STRATA_TRY(r, send(req));
    if (r.status != 200)
        return http_error("GET blob " + digest, r);
    if (digest_of(body) != digest)
        return make_error(ErrorKind::BadInput, "blob " + digest + " from the registry has digest " + digest_of(body) + ": refused");
    return body;
}

Result<Manifest> RegistryClient::get_manifest(std::string const& target)
{
    Request req;
    req.target = "/v2/" + m_ref.repository + "/manifests/" + target;
    req.headers = { "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json;q=0.5, "
                    "application/vnd.docker.distribution.manifest.v2+json;q=0.4" };
    std::string body;
    req.out = &body;
    req.out_limit = 4 << 20;
    STRATA_TRY(r, send(req));
    if (r.status == 404)
        return make_error(ErrorKind::NotFound, m_ref.registry + "/" + m_ref.repository + ":" + target + " is not in the registry"
                + (registry_errors(r.error_body).empty() ? "" : " (" + registry_errors(r.error_body) + ")"));
    if (r.status != 200)
        return http_error("GET manifest " + target, r);
    Manifest m { r.header("content-type"), digest_of(body), body };
    if (target.rfind("sha256:", 0) == 0 && m.digest != target)
        return make_error(ErrorKind::BadInput, "the manifest the registry sent for " + target + " has digest " + m.digest + ": refused");
    return m;
}

Result<std::string> RegistryClient::put_manifest(std::string const& target, std::string const& media_type, std::string const& bytes)
{
    Request req;
    req.method = "PUT";
    req.push = true;
    req.target = "/v2/" + m_ref.repository + "/manifests/" + target;
    req.headers = { "Content-Type: " + media_type };
    req.body = bytes;
    STRATA_TRY(r, send(req));
    if (r.status != 201)
        return http_error("PUT manifest " + target, r);
    return digest_of(bytes);
}

} // namespace strata::registry
