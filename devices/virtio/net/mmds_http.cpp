// The metadata service's HTTP side (mmds_stack.h): parsing one request from the
// bytes a connection received, and formatting an answer.
#include "devices/virtio/net/mmds_stack.h"

#include <algorithm>
#include <charconv>

namespace strata::virtio::net {

namespace {

std::string lower(std::string_view s)
{
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

char const* reason(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 501: return "Not Implemented";
    default: return "Error";
    }
}

} // namespace

HttpParse parse_http_request(std::string_view data)
{
    HttpParse out;
    auto const end = data.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        if (data.size() >= MmdsStack::MaxRequestBytes)
            out.error = "the request's header is too long";
        return out;
    }
    std::string_view head = data.substr(0, end);
    auto next_line = [&head]() {
        auto const eol = head.find("\r\n");
        std::string_view line = head.substr(0, eol);
        head = eol == std::string_view::npos ? std::string_view {} : head.substr(eol + 2);
        return line;
    };
    std::string_view const first = next_line();
    auto const sp1 = first.find(' ');
    auto const sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || first.find(' ', sp2 + 1) != std::string_view::npos) {
        out.error = "malformed request line";
        return out;
    }
    std::string_view const method = first.substr(0, sp1);
    std::string_view target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view const version = first.substr(sp2 + 1);
    if (method.empty() || method.size() > 16 || !std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
        out.error = "malformed method";
        return out;
    }
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        out.error = "unsupported HTTP version";
        return out;
    }
    if (target.empty() || target.front() != '/') {
        out.error = "the target must be an absolute path";
        return out;
    }
    if (target.find('?') != std::string_view::npos) {
        out.error = "query strings are not supported";
        return out;
    }
    out.request.method = std::string(method);
    out.request.path = std::string(target);
    std::size_t content_length = 0;
    bool keep_alive = false;
    while (!head.empty()) {
        std::string_view const line = next_line();
        auto const colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            out.error = "malformed header line";
            return out;
        }
        if (out.request.headers.size() >= 64) {
            out.error = "too many headers";
            return out;
        }
        std::string name = lower(line.substr(0, colon));
        std::string value(trim(line.substr(colon + 1)));
        if (name == "transfer-encoding") {
            out.error = "Transfer-Encoding is not supported";
            return out;
        }
        if (name == "content-length") {
            auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), content_length);
            if (ec != std::errc {} || p != value.data() + value.size() || content_length > MmdsStack::MaxRequestBytes) {
                out.error = "bad Content-Length";
                return out;
            }
        }
        if (name == "connection") {
            std::string const v = lower(value);
            out.close = out.close || v.find("close") != std::string::npos;
            keep_alive = v.find("keep-alive") != std::string::npos;
        }
        out.request.headers.emplace_back(std::move(name), std::move(value));
    }
    if (version == "HTTP/1.0" && !keep_alive)
        out.close = true;
    std::size_t const total = end + 4 + content_length;
    if (data.size() < total)
        return out; // the body is still on its way (it is read and ignored)
    out.used = total;
    return out;
}

std::string format_http_reply(MmdsReply const& reply, bool close)
{
    std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " " + reason(reply.status) + "\r\n";
    out += "Server: strata-mmds\r\nContent-Type: " + reply.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
    if (reply.allow_header)
        out += "Allow: GET, PUT\r\n";
    if (close)
        out += "Connection: close\r\n";
    out += "\r\n";
    out += reply.body;
    return out;
}

} // namespace strata::virtio::net
