// ConsoleRelay: the serial console of a detached VMM. The guest's serial output is
// appended to the serial log and copied to the attached console client, if any;
// what the client types goes to the guest's serial input. Clients attach through a
// Unix socket (mode 0600) in the VM's runtime folder; one at a time — a new client
// replaces the old one, as `strata vms console` from another terminal would expect.
// Threading: one private thread runs the relay; the Machine writes and reads the
// pipe ends returned by serial_out()/serial_in() from its own threads.
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <memory>
#include <string>
#include <thread>

namespace strata {

class ConsoleRelay {
public:
    [[nodiscard]] static Result<std::unique_ptr<ConsoleRelay>> start(std::string const& log_path, std::string const& socket_path);
    ~ConsoleRelay();

    int serial_out() const { return m_out_write.get(); } // the Machine writes guest output here
    int serial_in() const { return m_in_read.get(); }    // the Machine reads guest input here

private:
    ConsoleRelay() = default;
    void loop();

    std::string m_socket_path;
    Fd m_log;
    Fd m_listener;
    Fd m_out_read, m_out_write;
    Fd m_in_read, m_in_write;
    Fd m_stop;
    std::thread m_thread;
};

} // namespace strata
