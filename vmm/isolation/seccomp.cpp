// The filters of vmm/isolation/seccomp.h: the VMM's threads load programs compiled
// at build time (seccomp_programs.h, from the rules in seccomp_rules.h); only the
// supervisor builds its filter with libseccomp when it runs.
#include "vmm/isolation/seccomp.h"

#include "vmm/isolation/seccomp_programs.h"
#include "vmm/isolation/seccomp_rules.h"

#include <seccomp.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <mutex>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

namespace strata {

namespace {

std::atomic<int> g_mode { static_cast<int>(SeccompMode::Off) };
thread_local char const* t_kind = "main";
thread_local bool t_filtered = false;
thread_local char t_name[16] = "?"; // read before the filter: the handler may not call prctl
#if STRATA_TEST_HOOKS
std::string g_forbidden_kind;
std::atomic<bool> g_forbidden_done { false };
#endif

// Async-signal-safe: only write(2) and arithmetic.
void append(char*& p, char const* end, char const* text)
{
    while (*text && p < end)
        *p++ = *text++;
}

void append_number(char*& p, char const* end, long value)
{
    char digits[24];
    int n = 0;
    unsigned long v = value < 0 ? static_cast<unsigned long>(-value) : static_cast<unsigned long>(value);
    do {
        digits[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < 23);
    if (value < 0 && p < end)
        *p++ = '-';
    while (n > 0 && p < end)
        *p++ = digits[--n];
}

void append_hex(char*& p, char const* end, unsigned long value)
{
    append(p, end, "0x");
    char digits[17];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[value & 0xf];
        value >>= 4;
    } while (value != 0 && n < 16);
    while (n > 0 && p < end)
        *p++ = digits[--n];
}

void on_sigsys(int, siginfo_t* info, void* context)
{
    char message[256];
    char* p = message;
    char const* end = message + sizeof message - 1;
    append(p, end, "strata: seccomp: the ");
    append(p, end, t_kind);
    append(p, end, " thread '");
    append(p, end, t_name);
    append(p, end, "' made system call ");
    append_number(p, end, info->si_syscall);
#if defined(__x86_64__)
    if (info->si_syscall == SYS_ioctl && context != nullptr) {
        // The request number is the second argument, in rsi.
        auto const* uc = static_cast<ucontext_t const*>(context);
        append(p, end, " (ioctl ");
        append_hex(p, end, static_cast<unsigned long>(uc->uc_mcontext.gregs[REG_RSI]) & 0xffffffffUL);
        append(p, end, ")");
    }
#endif
    append(p, end, ", which its filter forbids; the VMM ends with SIGSYS\n");
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, message, static_cast<std::size_t>(p - message));
    // SIGSYS is blocked while this handler runs: with its default action back,
    // the tgkill below stays pending and ends the process as the handler returns.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGSYS, &dfl, nullptr);
    ::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), SIGSYS);
}

// SIGSYS to on_sigsys, for the filters' default action (SECCOMP_RET_TRAP).
Status handle_sigsys()
{
    struct sigaction action {};
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGSYS, &action, nullptr) != 0)
        return errno_error("seccomp: SIGSYS handler");
    return ok();
}

// Loads a compiled program on the calling thread. no_new_privs first, as
// libseccomp's own load does: the kernel takes a filter from a thread without
// CAP_SYS_ADMIN only with it, and a VMM never executes anything.
Status load_program(seccomp_rules::Program program, SeccompMode mode)
{
    auto bpf = compiled_seccomp_program(program, mode == SeccompMode::Log);
    char const* what = seccomp_rules::program_name(program);
    if (bpf.empty())
        return make_error(ErrorKind::Internal, std::string("seccomp: no compiled ") + what + " filter");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return errno_error(std::string("seccomp: ") + what + " filter: no_new_privs");
    // The kernel only reads the program; sock_fprog's pointer is not const.
    sock_fprog prog { static_cast<unsigned short>(bpf.size()), const_cast<sock_filter*>(bpf.data()) };
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return errno_error(std::string("seccomp: load the ") + what + " filter");
    return ok();
}

seccomp_rules::Program program_of(ThreadKind kind)
{
    using P = seccomp_rules::Program;
    switch (kind) {
    case ThreadKind::Vmm: return P::Vmm;
    case ThreadKind::ApiIo: return P::ApiIo;
    case ThreadKind::ApiWorker: return P::ApiWorker;
    case ThreadKind::Vcpu: return P::Vcpu;
    case ThreadKind::DeviceIo: return P::DeviceIo;
    case ThreadKind::Fetcher: return P::Fetcher;
    }
    return P::Vmm;
}

// The spawner: makes every thread once filtering is on (see the header).
class Spawner {
public:
    struct Job {
        ThreadKind kind;
        std::string name;
        std::function<void()> fn;
        sigset_t mask;
        std::promise<std::thread> made;
    };

    void start(SeccompMode mode)
    {
        std::promise<Status> ready;
        auto ready_future = ready.get_future();
        m_thread = std::thread([this, mode, &ready] {
            // Signals are for the threads that wait for them (the main thread's
            // signalfd), never for the spawner.
            sigset_t all;
            sigfillset(&all);
            sigdelset(&all, SIGSYS);
            pthread_sigmask(SIG_BLOCK, &all, nullptr);
            name_this_thread("strata-spawner");
            t_kind = "spawner";
            ::prctl(PR_GET_NAME, t_name, 0, 0, 0);
            ready.set_value(load_program(seccomp_rules::Program::Spawner, mode));
            loop();
        });
        m_thread.detach();
        m_status = ready_future.get();
    }
    Status const& status() const { return m_status; }

    std::thread spawn(ThreadKind kind, std::string name, std::function<void()> fn)
    {
        // The new thread gets the caller's signal mask, as a thread the caller
        // made itself would (the main thread blocks SIGINT and SIGTERM for its
        // signalfd before it starts the vCPUs).
        sigset_t mask;
        pthread_sigmask(SIG_SETMASK, nullptr, &mask);
        Job job { kind, std::move(name), std::move(fn), mask, {} };
        auto made = job.made.get_future();
        {
            std::lock_guard guard(m_lock);
            m_jobs.push_back(std::move(job));
        }
        m_cv.notify_one();
        return made.get();
    }

private:
    void loop()
    {
        for (;;) {
            std::unique_lock guard(m_lock);
            m_cv.wait(guard, [this] { return !m_jobs.empty(); });
            Job job = std::move(m_jobs.front());
            m_jobs.pop_front();
            guard.unlock();
            job.made.set_value(std::thread([kind = job.kind, name = std::move(job.name), fn = std::move(job.fn), mask = job.mask] {
                pthread_sigmask(SIG_SETMASK, &mask, nullptr);
                name_this_thread(name.c_str());
                if (auto applied = apply_seccomp(kind); !applied) {
                    // A thread that cannot be filtered must not run unfiltered.
                    std::string message = "strata: " + applied.error().message + "; ending the VMM\n";
                    [[maybe_unused]] auto n = ::write(STDERR_FILENO, message.data(), message.size());
                    std::abort();
                }
                fn();
            }));
        }
    }

    std::thread m_thread;
    Status m_status { ok() };
    std::mutex m_lock;
    std::condition_variable m_cv;
    std::deque<Job> m_jobs;
};

} // namespace

Result<SeccompMode> parse_seccomp_mode(std::string const& text)
{
    if (text == "default")
        return SeccompMode::Kill;
    if (text == "log")
        return SeccompMode::Log;
    if (text == "off")
        return SeccompMode::Off;
    return make_error(ErrorKind::Usage, "--seccomp must be default, log or off, not '" + text + "'");
}

Result<SeccompMode> default_seccomp_mode()
{
    if (char const* env = std::getenv("STRATA_SECCOMP"); env != nullptr && *env != '\0') {
        auto mode = parse_seccomp_mode(env);
        if (!mode)
            return make_error(ErrorKind::Usage, "STRATA_SECCOMP must be default, log or off, not '" + std::string(env) + "'");
        return mode;
    }
    return SeccompMode::Kill;
}

Status enable_seccomp(SeccompMode mode)
{
    if (mode == SeccompMode::Off)
        return ok();
    if (g_mode.load() != static_cast<int>(SeccompMode::Off))
        return make_error(ErrorKind::Internal, "seccomp: enabled twice");
    // The compiled programs end in this action: the kernel must have it (and the
    // seccomp system call; SECCOMP_RET_LOG came in Linux 4.14).
    std::uint32_t action = mode == SeccompMode::Log ? SECCOMP_RET_LOG : SECCOMP_RET_TRAP;
    if (::syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) != 0)
        return make_error(ErrorKind::Unsupported, std::string("seccomp: this kernel cannot filter system calls as --seccomp ") +
                (mode == SeccompMode::Log ? "log" : "default") + " asks: " + std::strerror(errno));
#if STRATA_TEST_HOOKS
    if (char const* kind = std::getenv("STRATA_TEST_SECCOMP_FORBIDDEN"); kind != nullptr)
        g_forbidden_kind = kind;
#endif
    // No core dump: it would hold the guest's memory.
    rlimit none {};
    ::setrlimit(RLIMIT_CORE, &none);
    STRATA_TRY(handle_sigsys());
    g_mode.store(static_cast<int>(mode));

    // Never destroyed: it waits on its condition variable for the rest of the
    // process, and destroying a condition variable with a waiter blocks forever.
    static Spawner& spawner = *new Spawner;
    spawner.start(mode);
    if (!spawner.status())
        return spawner.status().error();
    set_thread_launcher([](ThreadKind kind, std::string name, std::function<void()> fn) {
        return spawner.spawn(kind, std::move(name), std::move(fn));
    });
    return ok();
}

SeccompMode seccomp_mode() { return static_cast<SeccompMode>(g_mode.load()); }

Status apply_seccomp(ThreadKind kind)
{
    auto mode = static_cast<SeccompMode>(g_mode.load());
    if (mode == SeccompMode::Off || t_filtered)
        return ok();
    t_kind = thread_kind_name(kind);
    ::prctl(PR_GET_NAME, t_name, 0, 0, 0);
#if STRATA_TEST_HOOKS
    bool forbidden = !g_forbidden_kind.empty() && g_forbidden_kind == t_kind && !g_forbidden_done.exchange(true);
#endif
    STRATA_TRY(load_program(program_of(kind), mode));
    t_filtered = true;
#if STRATA_TEST_HOOKS
    if (forbidden)
        ::syscall(SYS_getppid);
#endif
    return ok();
}

Status apply_supervisor_seccomp(SeccompMode mode, pid_t vmm)
{
    if (mode == SeccompMode::Off)
        return ok();
    if (::seccomp_api_get() < 2)
        return make_error(ErrorKind::Unsupported, "seccomp: the kernel's seccomp API is too old for the supervisor's filter");
    STRATA_TRY(handle_sigsys());
    t_kind = "supervisor";
    ::prctl(PR_GET_NAME, t_name, 0, 0, 0);
    // A filter without CAP_SYS_ADMIN needs no_new_privs; the supervisor never
    // executes anything, so it loses nothing by it.
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    pid_t const self = ::getpid();
    std::uint32_t const deny = mode == SeccompMode::Log ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
    auto filter = seccomp_rules::build_filter(seccomp_rules::Program::Supervisor, deny, [vmm, self](scmp_filter_ctx ctx) {
        for (pid_t pid : { vmm, self }) {
            if (int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(pid))); rc < 0)
                return rc;
        }
        return 0;
    });
    if (!filter)
        return filter.error();
    int const rc = ::seccomp_load(filter.value());
    ::seccomp_release(filter.value());
    if (rc < 0)
        return Error { ErrorKind::Internal, -rc, std::string("seccomp: supervisor filter: load: ") + std::strerror(-rc) };
    t_filtered = true;
#if STRATA_TEST_HOOKS
    if (char const* kind = std::getenv("STRATA_TEST_SECCOMP_FORBIDDEN"); kind != nullptr && std::string_view(kind) == "supervisor")
        ::syscall(SYS_getppid);
#endif
    return ok();
}

} // namespace strata
