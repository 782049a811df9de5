// The filters of vmm/isolation/seccomp.h. The lists below were taken from what
// each kind of thread calls in the test suite (run with STRATA_SECCOMP=log and
// read back from the kernel's audit log) and from the code paths behind it; a
// system call is in a list because a path of that kind of thread makes it.
#include "vmm/isolation/seccomp.h"

#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_abi.h"

#include <seccomp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/sockios.h>
#include <mutex>
#include <pthread.h>
#include <span>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

namespace strata {

namespace {

using Names = std::span<char const* const>;

// Every thread: memory, locks, signals, time, its own end, and writing its
// messages.
constexpr char const* CommonCalls[] = {
    "read", "write", "readv", "writev", "close", "futex", "mmap", "munmap", "mprotect", "madvise", "brk",
    "mremap", "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "tgkill", "getpid", "gettid",
    "exit", "exit_group", "clock_gettime", "gettimeofday", "clock_nanosleep", "nanosleep", "sched_yield",
    "restart_syscall", "getrandom", "lseek", "fstat", "newfstatat", "sched_getaffinity", "eventfd2",
    "poll", "ppoll",
};

// The REST API's socket thread (Boost.Asio's reactor on epoll).
constexpr char const* ApiIoCalls[] = {
    "epoll_wait", "epoll_pwait", "epoll_ctl", "epoll_create1", "accept4", "accept", "recvmsg", "sendmsg",
    "recvfrom", "sendto", "shutdown", "fcntl", "getsockopt", "setsockopt", "getsockname", "getpeername",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "unlink", "unlinkat", "ioctl",
};

// A vCPU: KVM_RUN and the exits it handles (serial and console output, interrupt
// lines, MSIs, a transport's ioeventfds and irqfds when the driver activates a
// device), and asking the spawner for a device's thread.
constexpr char const* VcpuCalls[] = { "ioctl" };

// A device's I/O thread: its queue eventfds, the disk engine (io_uring, and the
// synchronous calls named in imaging/), virtio-net's tap (read, writev, the
// offloads the driver negotiates), timers for rate limits, and the console
// relay's socket.
constexpr char const* DeviceIoCalls[] = {
    "epoll_wait", "epoll_pwait", "epoll_ctl", "epoll_create1", "io_uring_enter", "pread64", "pwrite64",
    "preadv", "pwritev", "preadv2", "pwritev2", "fsync", "fdatasync", "fallocate", "ftruncate",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "accept4", "accept", "recvmsg", "sendmsg",
    "recvfrom", "sendto", "shutdown", "fcntl", "ioctl",
};

// The VM's builders and owners (the main thread, the API's worker): they open
// the disks, /dev/kvm and the store's files, create the VM, capture, snapshot and
// record. No process creation, no exec, no new sockets, no mounts, no ptrace.
constexpr char const* BuilderCalls[] = {
    "openat", "open", "stat", "lstat", "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
    "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "fsync", "fdatasync", "fallocate",
    "ftruncate", "truncate", "rename", "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat",
    "rmdir", "link", "linkat", "symlink", "symlinkat", "getdents64", "flock", "fcntl", "fchmod", "fchmodat",
    "fchown", "utimensat", "futimesat", "statfs", "fstatfs", "copy_file_range", "sync_file_range", "dup",
    "dup2", "dup3", "getcwd", "umask", "io_uring_setup", "io_uring_enter", "io_uring_register", "epoll_wait",
    "epoll_pwait", "epoll_ctl", "epoll_create1", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "signalfd4", "pipe2", "memfd_create", "ioctl", "getuid", "geteuid", "getgid", "getegid", "uname",
    "sysinfo", "prlimit64", "getrlimit", "mincore", "msync", "sendmsg", "recvmsg", "sendto", "recvfrom",
    "shutdown", "wait4", "fadvise64", "readahead",
};

// The main thread alone: deleting a --net netns=auto namespace as the machine
// goes (vmm/net_namespace.cpp detaches its bind mount).
constexpr char const* VmmCalls[] = { "umount2" };

// A lazily pulled disk's fetcher: a builder's file calls (it writes chunks into
// layer files, syncs them and records their presence, reads the registry's
// credentials) and the network libcurl uses, with name resolution: sockets
// (inet, and netlink for getaddrinfo's address check), the NSS files and
// libraries it opens, and the resolver thread libcurl may start.
constexpr char const* FetcherCalls[] = {
    "socket", "socketpair", "connect", "bind", "listen", "getsockname", "getpeername", "getsockopt", "setsockopt",
    "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "select", "pselect6",
    "clone", "clone3", "set_robust_list", "rseq",
};

// What only the spawner needs: making threads and letting them install their
// filters.
constexpr char const* SpawnerCalls[] = { "clone", "clone3", "set_robust_list", "rseq", "prctl", "seccomp" };

// The jail's supervisor once the VMM runs (jail.cpp supervise): waiting for
// signals and the VMM, the cgroup's removal (rmdir), giving the runtime folder
// back (opendir, fchownat), deleting netns=auto namespaces (umount2, unlink),
// and ending as the VMM ended (signal, prctl). kill(2) is added with its pids.
constexpr char const* SupervisorCalls[] = {
    "rt_sigtimedwait", "wait4", "waitid", "rmdir", "openat", "getdents64", "fchownat", "lchown", "newfstatat", "fstat",
    "getuid", "getgid", "geteuid", "getegid", "umount2", "unlink", "unlinkat", "prctl",
};

// ioctls by kind; compared as 32-bit values (the kernel ignores the upper half of
// the request number, so a filter must too).
constexpr unsigned long VcpuIoctls[] = {
    KVM_RUN, KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_IOEVENTFD, KVM_IRQFD, KVM_GET_REGS, KVM_GET_SREGS,
    KVM_SET_REGS, KVM_GET_VCPU_EVENTS, KVM_GET_MP_STATE,
    // A virtio-pci driver programming its MSI-X vectors changes the routing.
    // strata's own number (vmm/kvm/kvm_abi.h), the one vm.cpp passes: under C++
    // linux/kvm.h's KVM_SET_GSI_ROUTING is 0x4010ae6a, not KVM's 0x4008ae6a.
    kvm_abi::set_gsi_routing,
};
constexpr unsigned long DeviceIoctls[] = { KVM_IRQ_LINE, KVM_SIGNAL_MSI, FIONBIO, FIONREAD,
    // virtio-net sets the tap's offloads to what the driver accepted.
    TUNSETOFFLOAD };
constexpr unsigned long FetcherIoctls[] = { FIONBIO, FIONREAD, SIOCGIFINDEX, SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS };
constexpr unsigned long ApiIoIoctls[] = { FIONBIO, FIONREAD };
constexpr unsigned long BuilderIoctls[] = {
    KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE, KVM_CREATE_VCPU,
    KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_SET_USER_MEMORY_REGION,
    KVM_RUN, KVM_IRQ_LINE, KVM_IRQFD, KVM_IOEVENTFD, KVM_SIGNAL_MSI, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS,
    KVM_SET_SREGS, KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_VCPU_EVENTS,
    KVM_SET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_SET_MP_STATE, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, KVM_GET_CLOCK,
    KVM_SET_CLOCK, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2, KVM_SET_PIT2, FIONBIO, FIONREAD,
    // A Diff snapshot (PUT /snapshot/create) reads the slots' dirty logs.
    KVM_GET_DIRTY_LOG,
    // The structures ending in a flexible array by strata's own numbers, the ones
    // it passes (linux/kvm.h's differ under C++: vmm/kvm/kvm_abi.h).
    kvm_abi::get_supported_cpuid, kvm_abi::set_cpuid2, kvm_abi::get_msrs, kvm_abi::set_msrs,
    kvm_abi::get_msr_index_list, kvm_abi::get_xsave, kvm_abi::set_xsave, kvm_abi::get_xsave2,
    kvm_abi::set_gsi_routing,
    // A tap opened by a machine built on this thread (the API's worker on
    // InstanceStart, run --on-reboot restart): its index by name, then the tap.
    SIOCGIFINDEX, TUNSETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD,
    // FICLONE: a layer copy that shares extents where the file system can.
    0x40049409UL,
};

struct KindLists {
    std::vector<Names> calls;
    std::vector<std::span<unsigned long const>> ioctls;
    // socket(2) for AF_UNIX only: the builders open a tap by name, and glibc's
    // if_nametoindex asks an AF_UNIX datagram socket for the index (SIOCGIFINDEX).
    // No inet socket, and no connect: nothing beyond the host's interfaces' names.
    bool unix_sockets { false };
};

KindLists lists_of(ThreadKind kind)
{
    switch (kind) {
    case ThreadKind::ApiIo: return { { CommonCalls, ApiIoCalls }, { ApiIoIoctls } };
    case ThreadKind::Vcpu: return { { CommonCalls, VcpuCalls }, { VcpuIoctls } };
    case ThreadKind::DeviceIo: return { { CommonCalls, DeviceIoCalls }, { DeviceIoctls } };
    case ThreadKind::Vmm: return { { CommonCalls, BuilderCalls, VmmCalls }, { BuilderIoctls }, true };
    case ThreadKind::ApiWorker: return { { CommonCalls, BuilderCalls }, { BuilderIoctls }, true };
    case ThreadKind::Fetcher: return { { CommonCalls, BuilderCalls, FetcherCalls }, { FetcherIoctls } };
    }
    return {};
}

// The spawner's: every kind's lists, and its own.
KindLists spawner_lists()
{
    KindLists all;
    for (auto kind : { ThreadKind::Vmm, ThreadKind::ApiIo, ThreadKind::ApiWorker, ThreadKind::Vcpu, ThreadKind::DeviceIo,
             ThreadKind::Fetcher }) {
        auto one = lists_of(kind);
        all.calls.insert(all.calls.end(), one.calls.begin(), one.calls.end());
        all.ioctls.insert(all.ioctls.end(), one.ioctls.begin(), one.ioctls.end());
        all.unix_sockets = all.unix_sockets || one.unix_sockets;
    }
    all.calls.emplace_back(SpawnerCalls);
    return all;
}

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

// `extra` adds rules of the caller's own to the filter before it is loaded.
Status load_filter(KindLists const& lists, SeccompMode mode, char const* what,
    std::function<int(scmp_filter_ctx)> const& extra = {})
{
    std::uint32_t const deny = mode == SeccompMode::Log ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
    scmp_filter_ctx ctx = ::seccomp_init(deny);
    if (ctx == nullptr)
        return make_error(ErrorKind::Internal, std::string("seccomp: cannot make the ") + what + " filter");
    auto fail = [&](int rc, std::string const& why) {
        ::seccomp_release(ctx);
        return Error { ErrorKind::Internal, -rc, std::string("seccomp: ") + what + " filter: " + why + ": " + std::strerror(-rc) };
    };
    bool ioctl_listed = false;
    std::vector<int> added;
    int const ioctl_nr = SCMP_SYS(ioctl);
    for (auto names : lists.calls) {
        for (char const* name : names) {
            int nr = ::seccomp_syscall_resolve_name(name);
            if (nr == __NR_SCMP_ERROR)
                continue; // not a system call on this architecture
            if (nr == ioctl_nr) {
                ioctl_listed = true;
                continue;
            }
            if (std::find(added.begin(), added.end(), nr) != added.end())
                continue;
            added.push_back(nr);
            if (int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0); rc < 0)
                return fail(rc, std::string("allow ") + name);
        }
    }
    if (int const socket_nr = SCMP_SYS(socket); lists.unix_sockets && std::find(added.begin(), added.end(), socket_nr) == added.end()) {
        if (int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, socket_nr, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX)); rc < 0)
            return fail(rc, "allow AF_UNIX sockets");
    }
    if (ioctl_listed) {
        std::vector<unsigned long> done;
        for (auto numbers : lists.ioctls) {
            for (unsigned long request : numbers) {
                if (std::find(done.begin(), done.end(), request) != done.end())
                    continue;
                done.push_back(request);
                if (int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, ioctl_nr, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, request & 0xffffffffULL)); rc < 0)
                    return fail(rc, "allow an ioctl");
            }
        }
    }
    if (extra) {
        if (int rc = extra(ctx); rc < 0)
            return fail(rc, "add its own rules");
    }
    if (int rc = ::seccomp_load(ctx); rc < 0)
        return fail(rc, "load");
    ::seccomp_release(ctx);
    return ok();
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
            ready.set_value(load_filter(spawner_lists(), mode, "spawner"));
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
    // libseccomp probes the kernel's API level with system calls of its own the
    // first time it is asked: do that here, unfiltered.
    if (::seccomp_api_get() < 2)
        return make_error(ErrorKind::Unsupported, "seccomp: the kernel's seccomp API is too old for per-thread filters");
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
    STRATA_TRY(load_filter(lists_of(kind), mode, t_kind));
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
    KindLists lists { { CommonCalls, SupervisorCalls }, {} };
    STRATA_TRY(load_filter(lists, mode, "supervisor", [vmm, self](scmp_filter_ctx ctx) {
        for (pid_t pid : { vmm, self }) {
            if (int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(pid))); rc < 0)
                return rc;
        }
        return 0;
    }));
    t_filtered = true;
#if STRATA_TEST_HOOKS
    if (char const* kind = std::getenv("STRATA_TEST_SECCOMP_FORBIDDEN"); kind != nullptr && std::string_view(kind) == "supervisor")
        ::syscall(SYS_getppid);
#endif
    return ok();
}

} // namespace strata
