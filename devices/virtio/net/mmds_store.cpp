#include "devices/virtio/net/mmds_store.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <sys/random.h>

namespace strata::virtio::net {

using json = nlohmann::json;

struct MmdsStore::Data {
    json value = json::object();
};

std::string const* MmdsRequest::header(std::string_view name) const
{
    for (auto const& [k, v] : headers)
        if (k == name)
            return &v;
    return nullptr;
}

std::string_view mmds_version_name(MmdsVersion version) { return version == MmdsVersion::V2 ? "V2" : "V1"; }

std::shared_ptr<MmdsStore> MmdsStore::create(MmdsVersion version)
{
    return std::shared_ptr<MmdsStore>(new MmdsStore(version));
}

MmdsStore::MmdsStore(MmdsVersion version)
    : m_data(std::make_unique<Data>())
    , m_version(version)
{
}

MmdsStore::~MmdsStore() = default;

namespace {

Result<json> parse_object(std::string_view text, char const* what)
{
    json value = json::parse(text, nullptr, false);
    if (value.is_discarded())
        return make_error(ErrorKind::Usage, std::string("the ") + what + " body is not valid JSON");
    if (!value.is_object())
        return make_error(ErrorKind::Usage, std::string("the ") + what + " body must be a JSON object");
    return value;
}

std::string hex_token()
{
    unsigned char bytes[24];
    std::size_t got = 0;
    while (got < sizeof bytes) {
        ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
        if (n > 0)
            got += static_cast<std::size_t>(n);
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

// EC2's IMDS text for a value: a string as is, an object's keys one a line.
bool imds_text(json const& value, std::string& out)
{
    if (value.is_string()) {
        out = value.get<std::string>();
        return true;
    }
    if (!value.is_object())
        return false;
    for (auto it = value.begin(); it != value.end(); ++it) {
        if (!out.empty())
            out += '\n';
        out += it.key();
        if (it.value().is_object())
            out += '/';
    }
    return true;
}

MmdsReply fault(unsigned status, std::string message)
{
    return MmdsReply { status, "text/plain", std::move(message) + "\n", false };
}

} // namespace

Status MmdsStore::put(std::string_view json_text)
{
    STRATA_TRY(value, parse_object(json_text, "MMDS"));
    if (value.dump().size() > MaxDataBytes)
        return make_error(ErrorKind::Usage, "the MMDS data store would exceed " + std::to_string(MaxDataBytes) + " bytes");
    std::lock_guard lock(m_mutex);
    m_data->value = std::move(value);
    return ok();
}

Status MmdsStore::patch(std::string_view json_text)
{
    STRATA_TRY(value, parse_object(json_text, "MMDS patch"));
    std::lock_guard lock(m_mutex);
    json next = m_data->value;
    next.merge_patch(value);
    if (!next.is_object())
        return make_error(ErrorKind::Usage, "the MMDS patch would make the store something other than an object");
    if (next.dump().size() > MaxDataBytes)
        return make_error(ErrorKind::Usage, "the MMDS data store would exceed " + std::to_string(MaxDataBytes) + " bytes");
    m_data->value = std::move(next);
    return ok();
}

std::string MmdsStore::get() const
{
    std::lock_guard lock(m_mutex);
    return m_data->value.dump();
}

void MmdsStore::set_version(MmdsVersion version)
{
    std::lock_guard lock(m_mutex);
    m_version = version;
}

MmdsVersion MmdsStore::version() const
{
    std::lock_guard lock(m_mutex);
    return m_version;
}

MmdsCounters MmdsStore::counters() const
{
    std::lock_guard lock(m_mutex);
    return m_counters;
}

bool MmdsStore::token_valid(std::string const& token, std::chrono::steady_clock::time_point now)
{
    std::erase_if(m_tokens, [&](Token const& t) { return t.expires <= now; });
    return std::any_of(m_tokens.begin(), m_tokens.end(), [&](Token const& t) { return t.value == token; });
}

MmdsReply MmdsStore::answer(MmdsRequest const& request, std::chrono::steady_clock::time_point now)
{
    std::lock_guard lock(m_mutex);
    ++m_counters.requests;
    if (request.method == "PUT") {
        if (request.path != "/latest/api/token")
            return fault(404, "Resource not found: " + request.path);
        if (request.header("x-forwarded-for"))
            return fault(400, "Invalid header: a token request must not carry X-Forwarded-For");
        std::string const* ttl_text = request.header("x-metadata-token-ttl-seconds");
        if (!ttl_text)
            ttl_text = request.header("x-aws-ec2-metadata-token-ttl-seconds");
        if (!ttl_text)
            return fault(400, "Token time to live value not found: use X-metadata-token-ttl-seconds");
        std::uint64_t ttl = 0;
        auto [end, ec] = std::from_chars(ttl_text->data(), ttl_text->data() + ttl_text->size(), ttl);
        if (ec != std::errc {} || end != ttl_text->data() + ttl_text->size() || ttl < 1 || ttl > MaxTokenTtlS)
            return fault(400, "Invalid time to live value provided for token: " + *ttl_text + " (1 to 21600 seconds)");
        std::erase_if(m_tokens, [&](Token const& t) { return t.expires <= now; });
        if (m_tokens.size() >= MaxTokens)
            m_tokens.pop_front();
        Token token { hex_token(), now + std::chrono::seconds(ttl) };
        m_tokens.push_back(token);
        ++m_counters.tokens_issued;
        return MmdsReply { 200, "text/plain", token.value, false };
    }
    if (request.method != "GET")
        return MmdsReply { 405, "text/plain", "Not allowed HTTP method.\n", true };

    std::string const* token = request.header("x-metadata-token");
    if (!token)
        token = request.header("x-aws-ec2-metadata-token");
    if (!token) {
        ++m_counters.no_token;
        if (m_version == MmdsVersion::V2)
            return fault(401, "No MMDS token provided. Use `X-metadata-token` header to specify the session token.");
    } else if (!token_valid(*token, now)) {
        ++m_counters.invalid_token;
        if (m_version == MmdsVersion::V2)
            return fault(401, "MMDS token not valid.");
    }

    // The path as a JSON pointer: '/'-separated keys; empty segments (a trailing
    // slash, doubled slashes) are skipped.
    json const* node = &m_data->value;
    std::string_view rest = request.path;
    while (!rest.empty()) {
        auto const slash = rest.find('/');
        std::string_view const key = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view {} : rest.substr(slash + 1);
        if (key.empty())
            continue;
        if (node->is_object()) {
            auto it = node->find(std::string(key));
            if (it == node->end())
                return fault(404, "Resource not found: " + request.path);
            node = &*it;
        } else if (node->is_array()) {
            std::size_t index = 0;
            auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), index);
            if (ec != std::errc {} || end != key.data() + key.size() || index >= node->size())
                return fault(404, "Resource not found: " + request.path);
            node = &(*node)[index];
        } else {
            return fault(404, "Resource not found: " + request.path);
        }
    }
    std::string const* accept = request.header("accept");
    if (accept && accept->find("application/json") != std::string::npos)
        return MmdsReply { 200, "application/json", node->dump(), false };
    std::string text;
    if (!imds_text(*node, text))
        return fault(501, "Cannot retrieve value. The value has an invalid format.");
    return MmdsReply { 200, "text/plain", std::move(text), false };
}

} // namespace strata::virtio::net
