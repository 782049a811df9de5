// The blocking API client; see client.h.
#include "vmm/api/client.h"

#include "vmm/api/unix_listener.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <charconv>
#include <poll.h>
#include <sys/socket.h>

namespace strata::api {

namespace {

using Clock = std::chrono::steady_clock;

// Replies are small JSON documents; a larger one means something else answered.
constexpr std::size_t max_reply_bytes = 1 << 20;

// Waits until `fd` is ready for `events` or the deadline passes.
Status wait_for(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0)
            return make_error(ErrorKind::Busy, "the API did not answer in time");
        pollfd p { fd, events, 0 };
        int const rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
        if (rc > 0)
            return ok();
        if (rc < 0 && errno != EINTR)
            return errno_error("poll API socket");
    }
}

Status send_all(int fd, std::string_view data, Clock::time_point deadline)
{
    while (!data.empty()) {
        STRATA_TRY(wait_for(fd, POLLOUT, deadline));
        // MSG_NOSIGNAL: a server that closed early must not kill the CLI with SIGPIPE.
        auto const n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return errno_error("send to API socket");
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return ok();
}

Result<std::string> receive_all(int fd, Clock::time_point deadline)
{
    std::string reply;
    char buffer[16384];
    for (;;) {
        STRATA_TRY(wait_for(fd, POLLIN, deadline));
        auto const n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            // A server that refused an oversized request may reset the connection
            // after its reply; keep what arrived.
            if (errno == ECONNRESET && !reply.empty())
                return reply;
            return errno_error("receive from API socket");
        }
        if (n == 0)
            return reply;
        reply.append(buffer, static_cast<std::size_t>(n));
        if (reply.size() > max_reply_bytes)
            return make_error(ErrorKind::BadInput, "the API's reply is larger than 1 MiB");
    }
}

bool has_line_break_or_space(std::string_view text)
{
    return text.find_first_of("\r\n \t") != std::string_view::npos || text.find('\0') != std::string_view::npos;
}

Result<ApiResponse> parse_reply(std::string const& reply)
{
    auto const bad = [] { return make_error(ErrorKind::BadInput, "the API's reply is not an HTTP response"); };
    auto const header_end = reply.find("\r\n\r\n");
    if (header_end == std::string::npos || !reply.starts_with("HTTP/1.") || reply.size() < 12 || reply[8] != ' ')
        return bad();
    ApiResponse response;
    auto const [ptr, ec] = std::from_chars(reply.data() + 9, reply.data() + 12, response.status);
    if (ec != std::errc {} || ptr != reply.data() + 12 || response.status < 100 || response.status > 599)
        return bad();
    response.body = reply.substr(header_end + 4);
    // Trust Content-Length when present (a keep-alive server could send more).
    std::string headers = reply.substr(0, header_end + 2);
    for (auto& c : headers)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto const field = headers.find("\r\ncontent-length:");
    if (field != std::string::npos) {
        auto pos = field + 17;
        while (pos < headers.size() && headers[pos] == ' ')
            ++pos;
        std::size_t length = 0;
        auto const parsed = std::from_chars(headers.data() + pos, headers.data() + headers.size(), length);
        if (parsed.ec != std::errc {} || length > response.body.size())
            return make_error(ErrorKind::BadInput, "the API's reply is shorter than its Content-Length");
        response.body.resize(length);
    }
    return response;
}

} // namespace

std::string ApiResponse::fault_message() const
{
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_object()) {
        auto it = json.find("fault_message");
        if (it != json.end() && it->is_string())
            return it->get<std::string>();
    }
    return body;
}

Result<ApiResponse> api_request(std::string const& socket_path, std::string_view method, std::string_view target,
    std::string_view json_body, std::chrono::milliseconds timeout)
{
    if (method.empty() || target.empty() || has_line_break_or_space(method) || has_line_break_or_space(target))
        return make_error(ErrorKind::Usage, "an API method and target must be non-empty and contain no spaces or line breaks");
    auto const deadline = Clock::now() + timeout;

    // The request is built before connecting, so that a large body does not eat
    // into the server's read timeout.
    std::string request;
    request.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n");
    if (!json_body.empty())
        request.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(json_body.size())).append("\r\n");
    request.append("\r\n").append(json_body);
    STRATA_TRY(fd, connect_unix(socket_path));

    // A send failure may just mean the server refused the request early (413) and
    // closed; its reply is still readable, so read before reporting the send error.
    auto const sent = send_all(fd.get(), request, deadline);
    ::shutdown(fd.get(), SHUT_WR);
    auto reply = receive_all(fd.get(), deadline);
    if (!reply || reply.value().empty()) {
        if (!sent)
            return sent.error().context("API request " + std::string(method) + " " + std::string(target));
        if (!reply)
            return reply.error().context("API request " + std::string(method) + " " + std::string(target));
        return make_error(ErrorKind::Io, "the API closed the connection without a reply");
    }
    return parse_reply(reply.value());
}

} // namespace strata::api
