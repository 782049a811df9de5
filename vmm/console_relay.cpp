#include "vmm/console_relay.h"
#include "base/thread.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace strata {

Result<std::unique_ptr<ConsoleRelay>> ConsoleRelay::start(std::string const& log_path, std::string const& socket_path)
{
    auto relay = std::unique_ptr<ConsoleRelay>(new ConsoleRelay());
    relay->m_socket_path = socket_path;
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (log < 0)
        return errno_error("serial log '" + log_path + "'");
    relay->m_log = Fd(log);

    int out[2], in[2];
    if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(in, O_CLOEXEC) < 0)
        return errno_error("pipe");
    relay->m_out_read = Fd(out[0]);
    relay->m_out_write = Fd(out[1]);
    relay->m_in_read = Fd(in[0]);
    relay->m_in_write = Fd(in[1]);
    // Guest output must never block on a slow console client: the relay drops
    // what a client cannot take, and the pipe to the relay is non-blocking too.
    ::fcntl(out[1], F_SETFL, O_NONBLOCK);

    sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path)
        return make_error(ErrorKind::Usage, "console socket path is too long: " + socket_path);
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno_error("socket");
    relay->m_listener = Fd(s);
    ::unlink(socket_path.c_str());
    mode_t old = ::umask(0177);
    // SAFETY: sockaddr_un is one of the sockaddr layouts bind() takes; the length says which.
    int r = ::bind(s, reinterpret_cast<sockaddr const*>(&addr), sizeof addr);
    ::umask(old);
    if (r < 0)
        return errno_error("bind console socket '" + socket_path + "'");
    if (::listen(s, 2) < 0)
        return errno_error("listen");
    int stop = ::eventfd(0, EFD_CLOEXEC);
    if (stop < 0)
        return errno_error("eventfd");
    relay->m_stop = Fd(stop);
    relay->m_thread = start_thread(ThreadKind::DeviceIo, "strata-relay", [r = relay.get()] { r->loop(); });
    return relay;
}

ConsoleRelay::~ConsoleRelay()
{
    if (m_stop.valid()) {
        eventfd_signal(m_stop.get());
    }
    if (m_thread.joinable())
        m_thread.join();
    if (!m_socket_path.empty())
        ::unlink(m_socket_path.c_str());
}

static void write_all_or_drop(int fd, char const* data, std::size_t len)
{
    while (len > 0) {
        ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; // a full or gone client loses output rather than stall the guest
        data += n;
        len -= static_cast<std::size_t>(n);
    }
}

void ConsoleRelay::loop()
{
    Fd client;
    char buf[4096];
    while (true) {
        pollfd fds[4] = {
            { m_stop.get(), POLLIN, 0 },
            { m_out_read.get(), POLLIN, 0 },
            { m_listener.get(), POLLIN, 0 },
            { client.valid() ? client.get() : -1, POLLIN, 0 },
        };
        if (::poll(fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (fds[0].revents & POLLIN)
            return;
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            ssize_t n = ::read(m_out_read.get(), buf, sizeof buf);
            if (n > 0) {
                [[maybe_unused]] auto w = ::write(m_log.get(), buf, static_cast<std::size_t>(n));
                if (client.valid())
                    write_all_or_drop(client.get(), buf, static_cast<std::size_t>(n));
            }
        }
        if (fds[2].revents & POLLIN) {
            int c = ::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (c >= 0)
                client = Fd(c); // a new client replaces the old one
        }
        if (client.valid() && (fds[3].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = ::read(client.get(), buf, sizeof buf);
            if (n <= 0)
                client.reset();
            else
                [[maybe_unused]] auto w = ::write(m_in_write.get(), buf, static_cast<std::size_t>(n));
        }
    }
}

} // namespace strata
