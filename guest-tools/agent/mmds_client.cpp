#include "mmds_client.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace strata::agent {

using nlohmann::json;

std::optional<std::uint32_t> parse_ipv4(std::string const& text)
{
    std::uint32_t out = 0;
    std::size_t at = 0;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (at >= text.size() || text[at] != '.')
                return std::nullopt;
            ++at;
        }
        std::size_t digits = 0;
        unsigned value = 0;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9' && digits < 4) {
            value = value * 10 + static_cast<unsigned>(text[at] - '0');
            ++at;
            ++digits;
        }
        // No empty parts, no leading zeros (some parsers read them as octal), at most 255.
        if (digits == 0 || digits > 3 || value > 255 || (digits > 1 && text[at - digits] == '0'))
            return std::nullopt;
        out = (out << 8) | value;
    }
    if (at != text.size())
        return std::nullopt;
    return out;
}

std::optional<std::pair<std::uint32_t, unsigned>> parse_ipv4_cidr(std::string const& text)
{
    auto slash = text.find('/');
    if (slash == std::string::npos)
        return std::nullopt;
    auto address = parse_ipv4(text.substr(0, slash));
    std::string const bits = text.substr(slash + 1);
    if (!address || bits.empty() || bits.size() > 2 || !std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    unsigned const prefix = static_cast<unsigned>(std::stoi(bits));
    if (prefix < 1 || prefix > 32 || (bits.size() == 2 && bits[0] == '0'))
        return std::nullopt;
    return std::pair { *address, prefix };
}

std::string format_ipv4(std::uint32_t a)
{
    char text[16];
    std::snprintf(text, sizeof text, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    return text;
}

std::string format_http_request(HttpRequest const& request)
{
    std::string out = request.method + " " + request.path + " HTTP/1.1\r\nHost: " + format_ipv4(request.address) + "\r\n";
    for (auto const& [name, value] : request.headers)
        out += name + ": " + value + "\r\n";
    out += "Connection: close\r\n\r\n";
    return out;
}

HttpReply parse_http_reply(std::string const& text)
{
    HttpReply reply;
    auto const head_end = text.find("\r\n\r\n");
    if (head_end == std::string::npos) {
        reply.error = "the reply has no complete header";
        return reply;
    }
    std::string const head = text.substr(0, head_end);
    // "HTTP/1.x NNN reason"
    if (head.size() < 12 || head.compare(0, 7, "HTTP/1.") != 0 || head[8] != ' ' || !std::isdigit(static_cast<unsigned char>(head[9]))
        || !std::isdigit(static_cast<unsigned char>(head[10])) || !std::isdigit(static_cast<unsigned char>(head[11]))) {
        reply.error = "the reply does not start with an HTTP/1.x status line";
        return reply;
    }
    unsigned const status = static_cast<unsigned>((head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0'));
    std::string body = text.substr(head_end + 4);
    // Content-Length, when given, says where the body ends; a shorter body is cut off.
    std::size_t at = head.find("\r\n");
    while (at != std::string::npos) {
        std::size_t const next = head.find("\r\n", at + 2);
        std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
        at = next;
        auto colon = line.find(':');
        if (colon == std::string::npos)
            continue;
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (name != "content-length")
            continue;
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        if (value.empty() || value.size() > 9 || !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            reply.error = "the reply's Content-Length is not a number";
            return reply;
        }
        std::size_t const length = static_cast<std::size_t>(std::stoul(value));
        if (length > body.size()) {
            reply.error = "the reply ended before its body (" + std::to_string(body.size()) + " of " + value + " bytes)";
            return reply;
        }
        body.resize(length);
    }
    reply.status = status;
    reply.body = std::move(body);
    return reply;
}

std::optional<Metadata> metadata_from_mmds_json(std::string const& text, bool ec2, std::string& error)
{
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        error = "the metadata service's answer is not a JSON object";
        return std::nullopt;
    }
    auto string_at = [&](json const& object, char const* key, std::string& out) {
        auto it = object.find(key);
        if (it == object.end())
            return true;
        if (!it->is_string()) {
            error = std::string("the metadata service's '") + key + "' is not a string";
            return false;
        }
        out = it->get<std::string>();
        return true;
    };
    Metadata m;
    if (!string_at(j, "instance-id", m.instance_id))
        return std::nullopt;
    if (ec2) {
        if (!string_at(j, "local-hostname", m.hostname))
            return std::nullopt;
    } else if (auto meta = j.find("metadata"); meta != j.end()) {
        if (!meta->is_object()) {
            error = "the metadata service's 'metadata' is not an object";
            return std::nullopt;
        }
        std::string keys;
        if (!string_at(*meta, "hostname", m.hostname) || !string_at(*meta, "user", m.user) || !string_at(*meta, "ssh-authorized-keys", keys)
            || !string_at(*meta, "ipv4-address", m.ipv4_address) || !string_at(*meta, "ipv4-gateway", m.ipv4_gateway))
            return std::nullopt;
        if (keys.empty() && !string_at(*meta, "ssh_authorized_keys", keys))
            return std::nullopt;
        std::size_t at = 0;
        while (at <= keys.size()) {
            std::size_t end = keys.find_first_of(";\n", at);
            if (end == std::string::npos)
                end = keys.size();
            if (end > at)
                m.ssh_authorized_keys.push_back(keys.substr(at, end - at));
            at = end + 1;
        }
    }
    if (m.instance_id.empty()) {
        error = "the metadata service names no instance-id";
        return std::nullopt;
    }
    if (!m.ipv4_address.empty() && !parse_ipv4_cidr(m.ipv4_address)) {
        error = "ipv4-address '" + m.ipv4_address.substr(0, 40) + "' is not a.b.c.d/N";
        return std::nullopt;
    }
    if (!m.ipv4_gateway.empty() && (!parse_ipv4(m.ipv4_gateway) || m.ipv4_address.empty())) {
        error = "ipv4-gateway '" + m.ipv4_gateway.substr(0, 40) + "' is not a.b.c.d beside an ipv4-address";
        return std::nullopt;
    }
    return m;
}

namespace {

HttpReply bounded(HttpReply reply)
{
    if (reply.status != 0 && reply.body.size() > kMaxMmdsReplyBytes)
        return HttpReply { 0, {}, "the reply is larger than " + std::to_string(kMaxMmdsReplyBytes) + " bytes" };
    return reply;
}

} // namespace

MmdsOutcome fetch_mmds_metadata(Environment& env, MmdsOptions const& options)
{
    MmdsOutcome out;
    auto const deadline = env.now() + options.wait_for_interface;
    std::vector<std::string> ifaces = env.network_interfaces();
    while (ifaces.empty() && env.now() < deadline) {
        env.sleep(std::chrono::milliseconds(100));
        ifaces = env.network_interfaces();
    }
    if (ifaces.empty()) {
        out.error = "no network interface";
        return out;
    }
    out.iface = ifaces.front();
    // An interface the kernel (ip=) or someone else configured keeps its
    // address: it only gets the route to the service.
    bool const configured = env.current_ipv4(out.iface) != 0;
    std::uint32_t const temporary = options.address == 0xa9fe0002 ? 0xa9fe0003 : 0xa9fe0002; // 169.254.0.2 or .3
    Ipv4Setting first { out.iface, temporary, 16, 0, {}, false };
    if (configured)
        first = Ipv4Setting { out.iface, 0, 0, 0, { options.address }, true };
    if (auto e = env.configure_ipv4(first); !e.empty()) {
        out.error = "bringing " + out.iface + " up: " + e;
        return out;
    }
    out.log.push_back("reading the metadata service at " + format_ipv4(options.address) + " through " + out.iface);
    auto finish = [&](std::optional<Metadata> meta, std::string error) {
        Ipv4Setting setting { out.iface, 0, 0, 0, {}, configured };
        if (meta && !meta->ipv4_address.empty()) {
            auto cidr = parse_ipv4_cidr(meta->ipv4_address);
            setting.address = cidr->first;
            setting.prefix = cidr->second;
            setting.gateway = meta->ipv4_gateway.empty() ? 0 : *parse_ipv4(meta->ipv4_gateway);
            setting.host_routes = { options.address };
            setting.keep_address = false;
        } else if (configured) {
            out.metadata = std::move(meta);
            out.error = std::move(error);
            return out;
        }
        if (auto e = env.configure_ipv4(setting); !e.empty())
            error = (error.empty() ? "" : error + "; ") + "setting " + out.iface + (setting.address ? " to " + meta->ipv4_address : "'s address back") + ": " + e;
        else if (setting.address)
            out.log.push_back(out.iface + " is " + meta->ipv4_address + (setting.gateway ? " via " + meta->ipv4_gateway : ""));
        out.metadata = std::move(meta);
        out.error = std::move(error);
        return out;
    };

    HttpRequest token_request { options.address, "PUT", "/latest/api/token", { { "X-metadata-token-ttl-seconds", "60" } } };
    HttpReply token = bounded(env.http(token_request, options.request_timeout));
    if (token.status == 0)
        return finish(std::nullopt, "no metadata service: " + token.error);
    std::vector<std::pair<std::string, std::string>> headers { { "Accept", "application/json" } };
    if (token.status == 200 && !token.body.empty() && token.body.size() <= 128
        && std::all_of(token.body.begin(), token.body.end(), [](char c) { return c > ' ' && c < 127; }))
        headers.emplace_back("X-metadata-token", token.body);
    else
        out.log.push_back("no session token (" + std::to_string(token.status) + "); reading without one");

    bool ec2 = false;
    HttpReply reply = bounded(env.http(HttpRequest { options.address, "GET", "/strata", headers }, options.request_timeout));
    if (reply.status == 404) {
        ec2 = true;
        reply = bounded(env.http(HttpRequest { options.address, "GET", "/latest/meta-data", headers }, options.request_timeout));
    }
    if (reply.status != 200)
        return finish(std::nullopt, reply.status == 0 ? "the metadata service did not answer: " + reply.error
                                                      : "the metadata service answered " + std::to_string(reply.status));
    std::string error;
    auto meta = metadata_from_mmds_json(reply.body, ec2, error);
    return finish(std::move(meta), error);
}

} // namespace strata::agent
