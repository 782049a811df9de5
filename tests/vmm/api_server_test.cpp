// The API server (vmm/api/server.h) and client (client.h) over a real Unix socket
// with a fake controller: the socket file's mode and lifecycle, status codes and
// bodies over HTTP, keep-alive, malformed, truncated, slow and oversized requests
// (each gets a 4xx or a close, and the server keeps serving), and a blocking
// controller call that does not stall the socket I/O.
#include "tests/support/temp_dir.h"
#include "tests/vmm/api_fake_controller.h"
#include "vmm/api/client.h"
#include "vmm/api/server.h"
#include "vmm/api/unix_listener.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <poll.h>
#include <filesystem>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <thread>

using namespace strata;
using namespace strata::api;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Fixture {
    test::TempDir dir;
    std::string path = dir.path("api.sock");
    fake::FakeController vm;
    std::unique_ptr<ApiServer> server;

    explicit Fixture(ServerOptions options = {})
    {
        auto started = ApiServer::start(path, vm, options);
        INFO((started ? std::string() : started.error().message));
        REQUIRE(started.has_value());
        server = std::move(started.value());
    }

    ApiResponse call(std::string_view method, std::string_view target, std::string_view body = {})
    {
        auto r = api_request(path, method, target, body, 10s);
        INFO(method, " ", target, ": ", (r ? std::string() : r.error().message));
        REQUIRE(r.has_value());
        return r.value();
    }

    // The server still answers a well-formed request.
    void check_alive()
    {
        auto r = call("GET", "/");
        CHECK(r.status == 200);
        CHECK(json::parse(r.body)["app_name"] == "strata");
    }
};

Fd connect_raw(std::string const& path)
{
    auto fd = connect_unix(path);
    REQUIRE(fd.has_value());
    return std::move(fd.value());
}

void send_raw(int fd, std::string_view bytes)
{
    while (!bytes.empty()) {
        auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0)
            return; // the server may have closed early; what it sent is still readable
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Reads until the server closes the connection or `timeout` passes; `closed` says which.
std::string receive_raw(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr)
{
    std::string out;
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    if (closed)
        *closed = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0)
            return out;
        pollfd p { fd, POLLIN, 0 };
        if (::poll(&p, 1, static_cast<int>(left)) <= 0)
            continue;
        char buffer[4096];
        auto n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) {
            if (closed)
                *closed = true;
            return out;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
}

unsigned count_responses(std::string const& stream)
{
    unsigned n = 0;
    for (auto pos = stream.find("HTTP/1.1 "); pos != std::string::npos; pos = stream.find("HTTP/1.1 ", pos + 1))
        ++n;
    return n;
}

} // namespace

TEST_CASE("the socket file is a socket with mode 0600 and is removed on stop")
{
    Fixture f;
    struct stat st {};
    REQUIRE(::lstat(f.path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    f.server->stop();
    CHECK(::lstat(f.path.c_str(), &st) < 0);
    auto r = api_request(f.path, "GET", "/");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::NotFound);
    f.server->stop(); // idempotent
}

TEST_CASE("a live socket is refused, a stale one replaced, anything else left alone")
{
    Fixture f;
    fake::FakeController other;
    auto second = ApiServer::start(f.path, other);
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().kind == ErrorKind::Busy);
    f.check_alive(); // the first server's socket was not removed

    // A stale socket: bound, never listened on, closed without unlinking.
    std::string const stale = f.dir.path("stale.sock");
    {
        Fd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un addr {};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, stale.c_str(), stale.size());
        // SAFETY: sockaddr_un is a sockaddr layout bind() takes.
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr const*>(&addr), sizeof(addr)) == 0);
    }
    auto replaced = ApiServer::start(stale, other);
    REQUIRE(replaced.has_value());
    CHECK(api_request(stale, "GET", "/").value().status == 200);
    replaced.value()->stop();

    std::string const file = f.dir.path("not-a-socket");
    Fd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    auto refused = ApiServer::start(file, other);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().kind == ErrorKind::Exists);
    struct stat st {};
    CHECK(::lstat(file.c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));

    auto too_long = ApiServer::start("/tmp/" + std::string(120, 'x'), other);
    REQUIRE_FALSE(too_long.has_value());
    CHECK(too_long.error().kind == ErrorKind::Usage);
}

TEST_CASE("the socket file appears only once the socket listens: a client that sees it is never refused")
{
    // A client waiting for the file (inotify, as fast as a waiter can be) connects
    // the moment it appears. Bound at its final name, the file existed before the
    // socket listened, and such clients were refused now and then (ECONNREFUSED).
    test::TempDir dir;
    std::string const path = dir.path("api.sock");
    int refused = 0;
    for (int round = 0; round < 1000; ++round) {
        Fd watch(::inotify_init1(IN_CLOEXEC));
        REQUIRE(watch.valid());
        REQUIRE(::inotify_add_watch(watch.get(), dir.path.c_str(), IN_CREATE | IN_MOVED_TO) >= 0);
        auto client = std::async(std::launch::async, [&] {
            alignas(inotify_event) char buffer[4096];
            for (;;) {
                if (::read(watch.get(), buffer, sizeof(buffer)) <= 0)
                    return -1;
                struct stat st {};
                if (::lstat(path.c_str(), &st) == 0)
                    break;
            }
            auto fd = connect_unix(path);
            return fd.has_value() ? 0 : fd.error().err;
        });
        auto listener = listen_unix(path);
        REQUIRE(listener.has_value());
        int const err = client.get();
        if (err != 0) {
            INFO("round ", round, ": ", std::strerror(err));
            CHECK(err == ECONNREFUSED);
            ++refused;
        }
        remove_socket_file(path, listener.value());
    }
    CHECK(refused == 0);
    // Nothing but the socket was left in the directory on the way.
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator {}) == 0);
}

TEST_CASE("a path too long for a staging name next to it still gets its socket")
{
    test::TempDir dir;
    // sun_path holds 107 bytes of path; this one leaves no room for the staging name.
    std::string path = dir.path("s");
    path += std::string(107 - path.size(), 'x');
    REQUIRE(path.size() == 107);
    auto listener = listen_unix(path);
    INFO((listener ? std::string() : listener.error().message));
    REQUIRE(listener.has_value());
    CHECK(connect_unix(path).has_value());
    remove_socket_file(path, listener.value());
    struct stat st {};
    CHECK(::lstat(path.c_str(), &st) < 0);
}

TEST_CASE("requests over HTTP: statuses, bodies, content type, pre- and post-boot rules")
{
    Fixture f;
    auto info = f.call("GET", "/");
    CHECK(info.status == 200);
    CHECK(json::parse(info.body)["state"] == "Not started");

    CHECK(f.call("PUT", "/boot-source", R"({"firmware_path": "/fw.elf"})").status == 204);
    CHECK(f.call("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64})").status == 204);
    CHECK(f.call("PUT", "/drives/root", R"({"drive_id": "root", "disk_name": "d", "is_root_device": true})").status == 204);
    auto early = f.call("PATCH", "/vm", R"({"state": "Paused"})");
    CHECK(early.status == 400);
    CHECK(early.fault_message() == "The requested operation is not supported before starting the microVM.");
    CHECK(f.call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status == 204);
    auto late = f.call("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64})");
    CHECK(late.status == 400);
    CHECK(late.fault_message() == "The requested operation is not supported after starting the microVM.");
    CHECK(f.call("PATCH", "/vm", R"({"state": "Paused"})").status == 204);
    CHECK(json::parse(f.call("GET", "/").body)["state"] == "Paused");
    auto image = f.call("PUT", "/machine-images", R"({"name": "img1", "guest_flush": false})");
    CHECK(image.status == 200);
    CHECK(json::parse(image.body) == json { { "name", "img1" }, { "stall_us", 567 } });
    CHECK(json::parse(f.call("GET", "/metrics").body)["disks"][0]["drive_id"] == "root");
    CHECK(json::parse(f.call("GET", "/vm/config").body)["machine-config"]["vcpu_count"] == 2);

    auto missing = f.call("GET", "/missing");
    CHECK(missing.status == 400);
    CHECK(missing.fault_message() == "Invalid request method and/or path: GET /missing.");
    f.vm.fail_next(make_error(ErrorKind::Exists, "machine image 'img1' exists"));
    auto conflict = f.call("PUT", "/machine-images", R"({"name": "img1"})");
    CHECK(conflict.status == 409);
    CHECK(conflict.fault_message() == "machine image 'img1' exists");

    // The raw reply: JSON content type on 200, none and no body on 204.
    Fd fd = connect_raw(f.path);
    send_raw(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\nPATCH /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\nConnection: close\r\n\r\n{\"state\":\"Resumed\"}");
    auto stream = receive_raw(fd.get(), 10s);
    CHECK(stream.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(stream.find("Content-Type: application/json\r\n") != std::string::npos);
    auto second = stream.find("HTTP/1.1 204 No Content\r\n");
    REQUIRE(second != std::string::npos);
    CHECK(stream.find("Content-Type", second) == std::string::npos);
    CHECK(stream.ends_with("\r\n\r\n"));
}

TEST_CASE("keep-alive serves several requests on one connection, HTTP/1.0 closes")
{
    Fixture f;
    Fd fd = connect_raw(f.path);
    for (int i = 0; i < 5; ++i) {
        send_raw(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        bool closed = true;
        auto reply = receive_raw(fd.get(), 500ms, &closed);
        CHECK_FALSE(closed);
        CHECK(count_responses(reply) == 1);
    }
    Fd old = connect_raw(f.path);
    send_raw(old.get(), "GET / HTTP/1.0\r\n\r\n");
    bool closed = false;
    auto reply = receive_raw(old.get(), 10s, &closed);
    CHECK(closed);
    CHECK(reply.starts_with("HTTP/1.0 200 OK"));
}

TEST_CASE("Expect: 100-continue is answered before the body is sent")
{
    Fixture f;
    Fd fd = connect_raw(f.path);
    std::string const body = R"({"snapshot_name": "s"})";
    send_raw(fd.get(), "PUT /snapshot/disks HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
    auto interim = receive_raw(fd.get(), 1s);
    CHECK(interim == "HTTP/1.1 100 Continue\r\n\r\n");
    send_raw(fd.get(), body);
    auto reply = receive_raw(fd.get(), 500ms);
    CHECK(reply.starts_with("HTTP/1.1 400")); // Not started: the request was read whole and judged
    CHECK(reply.find("before starting the microVM") != std::string::npos);
}

TEST_CASE("malformed, truncated and oversized requests get 4xx or a close, and the server keeps serving")
{
    ServerOptions options;
    options.read_timeout = 1000ms;
    Fixture f(options);

    SUBCASE("garbage bytes")
    {
        Fd fd = connect_raw(f.path);
        send_raw(fd.get(), std::string("\x00\x01\xff garbage\r\n\r\n", 15));
        bool closed = false;
        auto reply = receive_raw(fd.get(), 10s, &closed);
        CHECK(reply.starts_with("HTTP/1.1 400 Bad Request"));
        CHECK(reply.find("Malformed HTTP request") != std::string::npos);
        CHECK(closed);
    }
    SUBCASE("bad JSON body")
    {
        auto r = f.call("PUT", "/machine-config", R"({"vcpu_count": 1,)");
        CHECK(r.status == 400);
        CHECK(r.fault_message().find("not valid JSON") != std::string::npos);
    }
    SUBCASE("a body shorter than its Content-Length, then a half-close")
    {
        Fd fd = connect_raw(f.path);
        send_raw(fd.get(), "PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"action");
        ::shutdown(fd.get(), SHUT_WR);
        bool closed = false;
        auto reply = receive_raw(fd.get(), 10s, &closed);
        CHECK(closed);
        CHECK((reply.empty() || reply.starts_with("HTTP/1.1 400")));
    }
    SUBCASE("truncated headers from a slow client are timed out")
    {
        Fd fd = connect_raw(f.path);
        send_raw(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n");
        bool closed = false;
        auto reply = receive_raw(fd.get(), 10s, &closed);
        CHECK(closed);
        CHECK(reply.empty());
    }
    SUBCASE("a connection that sends nothing is timed out")
    {
        Fd fd = connect_raw(f.path);
        bool closed = false;
        receive_raw(fd.get(), 10s, &closed);
        CHECK(closed);
    }
    SUBCASE("a 10 MiB body gets 413")
    {
        std::string body = R"({"name": ")" + std::string(10 << 20, 'a') + "\"}";
        auto r = f.call("PUT", "/machine-images", body);
        CHECK(r.status == 413);
        CHECK(r.fault_message().find("larger than 65536 bytes") != std::string::npos);
    }
    SUBCASE("a client still sending a 10 MiB body when refused can send it all, then reads its 413")
    {
        // curl sends a body up to 1 MiB without waiting for "100 Continue" and
        // gives up without reading the reply when a send fails: the server must
        // not close on a client that is still sending.
        std::string const body(10 << 20, 'a');
        std::string const request = "PUT /drives/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + std::to_string(body.size()) + "\r\n\r\n" + body;
        Fd fd = connect_raw(f.path);
        std::string_view left = request;
        int send_error = 0;
        while (!left.empty()) {
            auto n = ::send(fd.get(), left.data(), left.size(), MSG_NOSIGNAL);
            if (n < 0) {
                send_error = errno;
                break;
            }
            left.remove_prefix(static_cast<std::size_t>(n));
        }
        INFO("send: ", std::string(std::strerror(send_error)), ", ", left.size(), " bytes unsent");
        CHECK(left.empty());
        bool closed = false;
        auto reply = receive_raw(fd.get(), 10s, &closed);
        CHECK(reply.starts_with("HTTP/1.1 413"));
        CHECK(closed);
    }
    SUBCASE("a 10 MiB chunked body gets 413")
    {
        // Built before connecting: the 1 s read timeout runs from the connect.
        std::string chunk(1 << 20, 'a');
        std::string request = "PUT /machine-images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (int i = 0; i < 10; ++i)
            request += "100000\r\n" + chunk + "\r\n";
        request += "0\r\n\r\n";
        Fd fd = connect_raw(f.path);
        send_raw(fd.get(), request);
        auto reply = receive_raw(fd.get(), 10s);
        CHECK(reply.starts_with("HTTP/1.1 413"));
    }
    SUBCASE("a 16 KiB header gets 431")
    {
        std::string const request = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 << 10, 'h') + "\r\n\r\n";
        Fd fd = connect_raw(f.path);
        send_raw(fd.get(), request);
        auto reply = receive_raw(fd.get(), 10s);
        CHECK(reply.starts_with("HTTP/1.1 431"));
    }
    SUBCASE("an unknown method")
    {
        auto r = f.call("BREW", "/");
        CHECK(r.status == 400);
        CHECK(r.fault_message() == "Invalid request method and/or path: BREW /.");
    }
    f.check_alive();
    CHECK(json::parse(f.call("GET", "/").body)["state"] == "Not started");
}

TEST_CASE("a blocking controller call does not stall socket I/O, and requests are served in order")
{
    Fixture f;
    f.vm.set_state(VmState::Running);
    f.vm.block();
    auto capture = std::async(std::launch::async, [&] { return f.call("PUT", "/snapshot/disks", R"({"snapshot_name": "s1"})"); });
    // Wait until the worker is inside the controller.
    for (int i = 0; i < 1000 && f.vm.calls().empty(); ++i)
        std::this_thread::sleep_for(5ms);
    REQUIRE(f.vm.calls() == std::vector<std::string> { "snapshot_disks" });

    // The I/O thread still parses and refuses a bad request at once: the parse
    // errors of the transport do not need the worker...
    Fd fd = connect_raw(f.path);
    send_raw(fd.get(), "garbage\r\n\r\n");
    auto reply = receive_raw(fd.get(), 5s);
    CHECK(reply.starts_with("HTTP/1.1 400"));
    // ...while a well-formed request waits behind the capture.
    auto info = std::async(std::launch::async, [&] { return f.call("GET", "/metrics"); });
    CHECK(info.wait_for(200ms) == std::future_status::timeout);
    CHECK(capture.wait_for(0ms) == std::future_status::timeout);

    f.vm.unblock();
    auto captured = capture.get();
    CHECK(captured.status == 200);
    CHECK(json::parse(captured.body)["name"] == "s1");
    CHECK(info.get().status == 200);
    CHECK(f.vm.calls() == std::vector<std::string> { "snapshot_disks", "metrics" });
}

TEST_CASE("stop() with open idle connections and from a fresh start returns promptly")
{
    Fixture f;
    std::vector<Fd> idle;
    for (int i = 0; i < 4; ++i)
        idle.push_back(connect_raw(f.path));
    send_raw(idle[0].get(), "GET / HTTP/1.1\r\nHost: x\r\n"); // half a request
    f.server->stop();
    bool closed = false;
    receive_raw(idle[1].get(), 5s, &closed);
    CHECK(closed);
}

TEST_CASE("connections beyond max_connections are closed, the others still work")
{
    ServerOptions options;
    options.max_connections = 2;
    Fixture f(options);
    Fd a = connect_raw(f.path);
    Fd b = connect_raw(f.path);
    send_raw(a.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    send_raw(b.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(count_responses(receive_raw(a.get(), 300ms)) == 1);
    CHECK(count_responses(receive_raw(b.get(), 300ms)) == 1);
    Fd c = connect_raw(f.path);
    bool closed = false;
    receive_raw(c.get(), 5s, &closed);
    CHECK(closed);
    a.reset();
    b.reset();
    // Once the first two are gone, new connections are served again.
    for (int i = 0; i < 100; ++i) {
        auto r = api_request(f.path, "GET", "/", {}, 5s);
        if (r && r.value().status == 200)
            break;
        std::this_thread::sleep_for(10ms);
    }
    f.check_alive();
}

TEST_CASE("many clients at once")
{
    Fixture f;
    std::vector<std::future<int>> clients;
    for (int c = 0; c < 8; ++c) {
        clients.push_back(std::async(std::launch::async, [&] {
            int good = 0;
            for (int i = 0; i < 25; ++i) {
                auto r = api_request(f.path, "GET", "/metrics", {}, 10s);
                good += r && r.value().status == 200;
            }
            return good;
        }));
    }
    int total = 0;
    for (auto& c : clients)
        total += c.get();
    CHECK(total == 200);
}

TEST_CASE("the client refuses header injection and reports a missing server")
{
    test::TempDir dir;
    auto r = api_request(dir.path("none.sock"), "GET", "/");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::NotFound);
    auto bad = api_request(dir.path("none.sock"), "GET", "/ HTTP/1.1\r\nX: y");
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().kind == ErrorKind::Usage);
}
