// The API server over Boost.Asio and Beast; see server.h. This is the only file that
// includes Beast, to keep the build short on small machines.
#include "vmm/api/server.h"
#include "base/thread.h"

#include "vmm/api/dispatch.h"
#include "vmm/api/unix_listener.h"

#include <utility> // before boost/asio.hpp: Boost 1.74 under g++ 12 -std=c++20

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <cstdio>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>
#include <unistd.h>

namespace strata::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Protocol = asio::local::stream_protocol;
using Stream = beast::basic_stream<Protocol>;

class ApiSession;

struct ApiServer::Impl {
    Impl(std::string path, VmController& vm, ServerOptions opts)
        : socket_path(std::move(path))
        , controller(vm)
        , options(opts)
    {
    }

    void accept();
    void stop();
    // On the I/O thread: closes the acceptor and every connection.
    void close_all();

    std::string socket_path;
    VmController& controller;
    ServerOptions options;
    UnixListener listener;
    std::atomic<std::size_t> connections { 0 };
    std::atomic<bool> stopping { false };
    bool stopped { false };
    std::vector<std::weak_ptr<ApiSession>> sessions; // I/O thread only
    // Declaration order is destruction order reversed: the worker's queue (which may
    // hold sessions) is destroyed before the I/O context their sockets belong to.
    asio::io_context io { 1 };
    std::optional<Protocol::acceptor> acceptor;
    asio::io_context worker;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> worker_guard;
    std::thread io_thread;
    std::thread worker_thread;
};

// One connection: read a request, have the worker handle it, write the reply, and
// again while the client keeps the connection alive. Lives as long as a pending
// operation or a queued handler holds it.
class ApiSession : public std::enable_shared_from_this<ApiSession> {
public:
    ApiSession(ApiServer::Impl& server, Protocol::socket socket)
        : m_server(server)
        , m_stream(std::move(socket))
    {
        ++m_server.connections;
    }
    ~ApiSession() { --m_server.connections; }

    void close()
    {
        beast::error_code ignored;
        m_stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
        m_stream.close();
    }

    void read()
    {
        m_parser.emplace();
        m_parser->header_limit(static_cast<std::uint32_t>(m_server.options.max_header_bytes));
        m_parser->body_limit(m_server.options.max_body_bytes);
        m_stream.expires_after(m_server.options.read_timeout);
        http::async_read_header(m_stream, m_buffer, *m_parser,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

private:
    // The header is in (and passed its size limit, and a Content-Length over the
    // body limit has already failed). A client that waits for "100 Continue"
    // before sending its body (curl does for larger bodies) gets it now.
    void on_header(beast::error_code ec)
    {
        if (ec) {
            on_read(ec);
            return;
        }
        auto const read_body = [self = shared_from_this()] {
            http::async_read(self->m_stream, self->m_buffer, *self->m_parser,
                [self](beast::error_code read_ec, std::size_t) { self->on_read(read_ec); });
        };
        if (!beast::iequals(m_parser->get()[http::field::expect], "100-continue")) {
            read_body();
            return;
        }
        m_continue.emplace(http::status::continue_, 11);
        http::async_write(m_stream, *m_continue, [self = shared_from_this(), read_body](beast::error_code write_ec, std::size_t) {
            if (write_ec) {
                self->close();
                return;
            }
            read_body();
        });
    }

    void on_read(beast::error_code ec)
    {
        if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout
            || ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
            close();
            return;
        }
        // A request refused before its end was read: the client may still be
        // sending it. Closing at once would make its sends fail (EPIPE) and a
        // client such as curl then gives up without reading the reply, so the
        // rest is read and dropped first (drain()).
        if (ec == http::error::body_limit) {
            m_drain = true;
            reply(fault_reply(413, "The request body is larger than " + std::to_string(m_server.options.max_body_bytes) + " bytes."), false, 11);
            return;
        }
        if (ec == http::error::header_limit) {
            m_drain = true;
            reply(fault_reply(431, "The request header is larger than " + std::to_string(m_server.options.max_header_bytes) + " bytes."), false, 11);
            return;
        }
        if (ec) {
            m_drain = true;
            reply(fault_reply(400, "Malformed HTTP request: " + ec.message() + "."), false, 11);
            return;
        }

        auto request = m_parser->release();
        bool const keep_alive = request.keep_alive();
        unsigned const version = request.version();
        m_stream.expires_never();
        // The controller may block; run it on the worker and come back to the I/O
        // thread with the reply. The session stays alive in the lambdas.
        asio::post(m_server.worker, [self = shared_from_this(), request = std::move(request), keep_alive, version]() mutable {
            if (self->m_server.stopping)
                return; // stop() is closing every connection; run nothing more
            HttpReply result;
            try {
                auto const method = request.method_string();
                auto const target = request.target();
                result = handle_request(self->m_server.controller, std::string_view(method.data(), method.size()),
                    std::string_view(target.data(), target.size()), request.body());
            } catch (std::exception const& e) {
                // Nothing below is meant to throw; if a bug does, the client gets a 500
                // and the VM and the server carry on.
                result = fault_reply(500, std::string("Internal error: ") + e.what());
            }
            asio::post(self->m_server.io, [self, result = std::move(result), keep_alive, version]() mutable {
                self->reply(std::move(result), keep_alive, version);
            });
        });
    }

    void reply(HttpReply result, bool keep_alive, unsigned version)
    {
        if (m_server.stopping) {
            close();
            return;
        }
        m_response.emplace(static_cast<http::status>(result.status), version);
        m_response->set(http::field::server, "strata");
        if (result.status != 204) {
            m_response->set(http::field::content_type, "application/json");
            m_response->body() = std::move(result.body);
        }
        m_response->keep_alive(keep_alive);
        m_response->prepare_payload();
        m_stream.expires_after(m_server.options.write_timeout);
        http::async_write(m_stream, *m_response, [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
            if (!ec && self->m_drain) {
                // One deadline for the whole drain: a client trickling bytes
                // cannot hold the connection longer than read_timeout.
                self->m_stream.expires_after(self->m_server.options.read_timeout);
                self->drain();
                return;
            }
            if (ec || !keep_alive) {
                self->close();
                return;
            }
            self->read();
        });
    }

    // After a refusal: reads and drops what the client still sends, until it
    // closes, read_timeout (from the reply) passes, or max_drain_bytes have
    // come, then closes.
    // The client has its reply by now; this only lets its sends complete.
    void drain()
    {
        if (m_drained >= max_drain_bytes) {
            close();
            return;
        }
        m_buffer.consume(m_buffer.size());
        m_stream.async_read_some(m_buffer.prepare(64 * 1024), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
            if (ec || self->m_server.stopping) {
                self->close();
                return;
            }
            self->m_drained += n;
            self->m_buffer.commit(n);
            self->drain();
        });
    }

    // Bounds drain(): a client refused for a 10 MiB body may send it all, one
    // that streams without end is cut off.
    static constexpr std::size_t max_drain_bytes = 64 << 20;

    ApiServer::Impl& m_server;
    Stream m_stream;
    beast::flat_buffer m_buffer;
    std::optional<http::request_parser<http::string_body>> m_parser;
    std::optional<http::response<http::string_body>> m_response;
    std::optional<http::response<http::empty_body>> m_continue;
    bool m_drain { false };
    std::size_t m_drained { 0 };
};

namespace {

// Runs the context until it stops. A handler that throws would otherwise end
// the thread and, through std::terminate, the VMM and its VM: no request may
// do that. The exception is logged (the VMM's log) and the loop goes on; the
// connection whose handler threw is left to its timeout.
void run_guarded(asio::io_context& context, char const* name)
{
    for (;;) {
        try {
            context.run();
            return;
        } catch (std::exception const& e) {
            std::fprintf(stderr, "strata: API %s thread: unexpected exception: %s\n", name, e.what());
        } catch (...) {
            std::fprintf(stderr, "strata: API %s thread: unexpected exception\n", name);
        }
    }
}

} // namespace

void ApiServer::Impl::accept()
{
    acceptor->async_accept([this](beast::error_code ec, Protocol::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open())
            return;
        if (!ec) {
            if (connections.load() >= options.max_connections) {
                beast::error_code ignored;
                socket.close(ignored);
            } else {
                auto session = std::make_shared<ApiSession>(*this, std::move(socket));
                std::erase_if(sessions, [](auto const& weak) { return weak.expired(); });
                sessions.push_back(session);
                session->read();
            }
        }
        // Errors such as EMFILE are not fatal: keep accepting (the next try may work).
        accept();
    });
}

void ApiServer::Impl::stop()
{
    if (stopped)
        return;
    stopped = true;
    stopping = true;
    // Close every connection on the I/O thread (sockets are not thread-safe), so
    // clients see the close now rather than when the server is destroyed.
    if (io_thread.joinable()) {
        std::promise<void> closed;
        asio::post(io, [this, &closed] {
            close_all();
            closed.set_value();
        });
        closed.get_future().wait();
    }
    // Let a controller call in progress finish (queued ones see `stopping` and
    // return), then stop the I/O thread; replies posted back are dropped.
    worker_guard.reset();
    if (worker_thread.joinable())
        worker_thread.join();
    io.stop();
    if (io_thread.joinable())
        io_thread.join();
    close_all();
    remove_socket_file(socket_path, listener);
}

void ApiServer::Impl::close_all()
{
    beast::error_code ignored;
    if (acceptor)
        acceptor->close(ignored);
    for (auto const& weak : sessions) {
        if (auto session = weak.lock())
            session->close();
    }
    sessions.clear();
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(std::string socket_path, VmController& controller, ServerOptions options)
{
    auto impl = std::make_unique<Impl>(std::move(socket_path), controller, options);
    STRATA_TRY(listener, listen_unix(impl->socket_path));
    impl->listener = std::move(listener);
    beast::error_code ec;
    impl->acceptor.emplace(impl->io);
    // The acceptor owns the listening descriptor from here on; the listener keeps
    // only the socket file's identity.
    int const fd = impl->listener.fd.release();
    impl->acceptor->assign(Protocol(), fd, ec);
    if (ec) {
        ::close(fd);
        remove_socket_file(impl->socket_path, impl->listener);
        return make_error(ErrorKind::Internal, "serve API socket: " + ec.message());
    }
    impl->accept();
    impl->worker_guard.emplace(impl->worker.get_executor());
    Impl* raw = impl.get();
    impl->worker_thread = start_thread(ThreadKind::ApiWorker, "strata-api-work", [raw] { run_guarded(raw->worker, "worker"); });
    impl->io_thread = start_thread(ThreadKind::ApiIo, "strata-api", [raw] { run_guarded(raw->io, "I/O"); });
    return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

ApiServer::ApiServer(std::unique_ptr<Impl> impl)
    : m_impl(std::move(impl))
{
}

ApiServer::~ApiServer()
{
    stop();
}

void ApiServer::stop()
{
    m_impl->stop();
}

std::string const& ApiServer::socket_path() const
{
    return m_impl->socket_path;
}

} // namespace strata::api
