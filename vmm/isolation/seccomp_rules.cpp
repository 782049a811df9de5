// The rules of seccomp_rules.h.
#include "vmm/isolation/seccomp_rules.h"

#include "vmm/kvm/kvm_abi.h"

#include <algorithm>
#include <cstring>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/sockios.h>
#include <span>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <vector>

namespace strata::seccomp_rules {

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

KindLists lists_of(Program program)
{
    switch (program) {
    case Program::ApiIo: return { { CommonCalls, ApiIoCalls }, { ApiIoIoctls } };
    case Program::Vcpu: return { { CommonCalls, VcpuCalls }, { VcpuIoctls } };
    case Program::DeviceIo: return { { CommonCalls, DeviceIoCalls }, { DeviceIoctls } };
    case Program::Vmm: return { { CommonCalls, BuilderCalls, VmmCalls }, { BuilderIoctls }, true };
    case Program::ApiWorker: return { { CommonCalls, BuilderCalls }, { BuilderIoctls }, true };
    case Program::Fetcher: return { { CommonCalls, BuilderCalls, FetcherCalls }, { FetcherIoctls } };
    case Program::Supervisor: return { { CommonCalls, SupervisorCalls }, {} };
    case Program::Spawner: {
        // Every kind's lists, and its own.
        KindLists all;
        for (auto kind : { Program::Vmm, Program::ApiIo, Program::ApiWorker, Program::Vcpu, Program::DeviceIo, Program::Fetcher }) {
            auto one = lists_of(kind);
            all.calls.insert(all.calls.end(), one.calls.begin(), one.calls.end());
            all.ioctls.insert(all.ioctls.end(), one.ioctls.begin(), one.ioctls.end());
            all.unix_sockets = all.unix_sockets || one.unix_sockets;
        }
        all.calls.emplace_back(SpawnerCalls);
        return all;
    }
    }
    return {};
}

} // namespace

char const* program_name(Program program)
{
    switch (program) {
    case Program::Vmm: return "vmm";
    case Program::ApiIo: return "api";
    case Program::ApiWorker: return "api-worker";
    case Program::Vcpu: return "vcpu";
    case Program::DeviceIo: return "device-io";
    case Program::Fetcher: return "fetcher";
    case Program::Spawner: return "spawner";
    case Program::Supervisor: return "supervisor";
    }
    return "?";
}

Result<scmp_filter_ctx> build_filter(Program program, std::uint32_t deny, std::function<int(scmp_filter_ctx)> const& extra)
{
    char const* what = program_name(program);
    KindLists const lists = lists_of(program);
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
    return ctx;
}

} // namespace strata::seccomp_rules
