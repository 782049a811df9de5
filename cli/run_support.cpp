#include "cli/run_support.h"
#include "base/thread.h"

#include "base/sysexits.h"
#include "vmm/api/server.h"
#include "vmm/isolation/seccomp.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <optional>
#include <malloc.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>

namespace strata::cli {

Result<SeccompMode> seccomp_mode_option(std::string const& option)
{
    return option.empty() ? default_seccomp_mode() : parse_seccomp_mode(option);
}

Status enable_seccomp_option(std::string const& option)
{
    STRATA_TRY(mode, seccomp_mode_option(option));
    return enable_seccomp(mode);
}

int report(Error const& error)
{
    std::cerr << "strata: " << error.message << "\n";
    return exit_code_for(error.kind);
}

void block_stop_signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void use_one_malloc_arena()
{
    // glibc gives each thread that allocates an arena of its own, up to eight
    // per core: a VMM's few threads (spawner, signals, KVM preparation, vCPUs,
    // device I/O, API) each kept one, some 400 KiB of private memory in all
    // (bench/startup's vmm_overhead), to spare a lock that their per-thread
    // caches (tcache) already keep mostly uncontended.
    ::mallopt(M_ARENA_MAX, 1);
}

template<typename T>
T with_signals(std::function<T()> const& fn, std::function<void()> const& stop, int& signal_number)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
    int wake[2];
    if (::pipe2(wake, O_CLOEXEC) < 0)
        wake[0] = wake[1] = -1;
    std::thread watcher = start_thread(ThreadKind::Vmm, "strata-signals", [&] {
        pollfd fds[2] = { { sfd, POLLIN, 0 }, { wake[0], POLLIN, 0 } };
        while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
        }
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo info {};
            if (::read(sfd, &info, sizeof info) == sizeof info)
                signal_number = static_cast<int>(info.ssi_signo);
            stop();
        }
    });
    T result = fn();
    char byte = 0;
    [[maybe_unused]] auto n = ::write(wake[1], &byte, 1);
    watcher.join();
    ::close(sfd);
    ::close(wake[0]);
    ::close(wake[1]);
    return result;
}

template MachineExit with_signals<MachineExit>(std::function<MachineExit()> const&, std::function<void()> const&, int&);
template std::optional<MachineExit> with_signals<std::optional<MachineExit>>(std::function<std::optional<MachineExit>()> const&, std::function<void()> const&, int&);

int serve_until_exit(VmmController& controller, std::string const& socket, bool boot_now, std::function<void()> const& on_serving,
    std::function<void(MachineExit const&)> const& on_exit)
{
    if (boot_now) {
        if (auto r = controller.start(); !r)
            return report(r.error());
    }
    auto server = api::ApiServer::start(socket, controller);
    if (!server)
        return report(server.error().context("API socket '" + socket + "'"));
    if (on_serving)
        on_serving();
    // The API serves and the machine (when booted now) is built: from here the
    // main thread waits for the guest, and records how it ended.
    if (auto filtered = apply_seccomp(ThreadKind::Vmm); !filtered)
        return report(filtered.error());
    int signal_number = 0;
    auto exit = with_signals<std::optional<MachineExit>>([&] { return controller.run_until_exit(); }, [&] { controller.request_stop(); }, signal_number);
    server.value()->stop();
    if (exit && on_exit)
        on_exit(*exit);
    bool restart = false;
    return exit ? exit_status(*exit, OnReboot::Exit, signal_number, restart) : 0;
}

int exit_status(MachineExit const& exit, OnReboot on_reboot, int signal_number, bool& restart)
{
    restart = false;
    switch (exit.kind) {
    case MachineExit::Kind::GuestExit:
        // Only 0-63 pass through: above them lie strata's own codes (64-78) and
        // the shell's 128+N for a signal, which a guest must not be able to fake.
        if (exit.value <= max_guest_exit_value)
            return static_cast<int>(exit.value);
        std::cerr << "strata: the guest wrote " << exit.value << " to the exit port, outside 0-" << max_guest_exit_value
                  << "; exiting " << guest_exit_out_of_range << "\n";
        return guest_exit_out_of_range;
    case MachineExit::Kind::Reset:
        if (on_reboot == OnReboot::Restart) {
            std::cerr << "strata: guest reset; restarting\n";
            restart = true;
            return 0;
        }
        std::cerr << "strata: guest reset; exiting (--on-reboot exit)\n";
        return 0;
    case MachineExit::Kind::PowerOff:
        std::cerr << "strata: guest powered off\n";
        return 0;
    case MachineExit::Kind::TripleFault:
        // A PC resets on a triple fault (the CPU's shutdown cycle), and kernels
        // reboot that way on purpose (Linux's reboot=t, its last resort): so it
        // is a reset here too, with the registers shown in case it was a crash.
        std::cerr << "strata: guest " << exit.details;
        if (on_reboot == OnReboot::Restart) {
            std::cerr << "strata: guest reset by a triple fault; restarting\n";
            restart = true;
            return 0;
        }
        std::cerr << "strata: guest reset by a triple fault; exiting (--on-reboot exit)\n";
        return 0;
    case MachineExit::Kind::Stopped:
        std::cerr << "strata: stopped by " << (signal_number ? strsignal(signal_number) : "request") << "\n";
        return signal_number ? 128 + signal_number : 0;
    case MachineExit::Kind::Failed:
        std::cerr << "strata: guest failed: " << exit.details << "\n";
        return exit_code_for(ErrorKind::Guest);
    }
    return exit_code_for(ErrorKind::Internal);
}

} // namespace strata::cli
