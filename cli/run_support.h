// What `strata run` and `strata vmm` share: turning SIGINT/SIGTERM into a stop
// request while a VM runs, reporting errors, and mapping how a machine ended to
// strata's exit status (README.md lists the codes).
// Threading: main thread; with_signals runs one watcher thread while fn runs.
#pragma once

#include "base/result.h"
#include "vmm/isolation/seccomp.h"
#include "vmm/machine.h"
#include "vmm/vmm_controller.h"

#include <cstdint>
#include <functional>
#include <string>

namespace strata::cli {

// Turns on the VMM's seccomp filters (vmm/isolation/seccomp.h): `option` is the
// command's --seccomp, empty when not given (then $STRATA_SECCOMP, else default).
[[nodiscard]] Status enable_seccomp_option(std::string const& option);
// The mode `option` names (as above), for the jail's supervisor.
[[nodiscard]] Result<SeccompMode> seccomp_mode_option(std::string const& option);

// Prints "strata: <message>" on stderr and returns the error's sysexits code.
int report(Error const& error);

// Blocks SIGINT and SIGTERM in the calling thread, so that every thread it
// starts from then on inherits the mask. A VMM command calls it first, before
// any thread exists: a process-directed SIGTERM goes to some thread that does
// not block it, and if that is a helper thread (the console relay, the API's),
// its default action ends the process at once, without the destructors that
// delete a netns=auto namespace, the pid file and the sockets. Blocked
// everywhere, it waits pending until with_signals' signalfd reads it.
void block_stop_signals();

// One malloc arena for all the VMM's threads (see run_support.cpp); called by
// each VMM command first, before any thread starts.
void use_one_malloc_arena();

// Runs fn with SIGINT and SIGTERM blocked; when one arrives, calls stop (once)
// and records its number in signal_number. Returns fn's result.
template<typename T>
T with_signals(std::function<T()> const& fn, std::function<void()> const& stop, int& signal_number);

// Serves the REST API on `socket` for controller's VM until the VM ends or a
// signal stops it, and returns strata's exit status. With boot_now the VM is
// started before the API answers (its configuration came with it); otherwise the
// API configures and starts it. on_serving runs once the API answers.
// on_exit sees how the machine ended (not called when it never started).
int serve_until_exit(VmmController& controller, std::string const& socket, bool boot_now,
    std::function<void()> const& on_serving = {}, std::function<void(MachineExit const&)> const& on_exit = {});

// A guest's exit-port value passes through as strata's exit status only up to
// max_guest_exit_value; any other value exits guest_exit_out_of_range
// (EX_PROTOCOL, which no other strata failure uses), so that a guest cannot
// pose as a strata error (64-78) or as a signal (128+N).
inline constexpr std::uint32_t max_guest_exit_value = 63;
inline constexpr int guest_exit_out_of_range = 76;

// The exit status for a machine that ended; sets restart when the guest reset and
// on_reboot says to boot again. Messages about how it ended go to stderr.
int exit_status(MachineExit const& exit, OnReboot on_reboot, int signal_number, bool& restart);

} // namespace strata::cli
