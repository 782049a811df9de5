// The seccomp filters of vmm/isolation/seccomp.h without a guest: each case runs in
// a child process (enabling the filters is for the rest of a process), installs
// a kind's filter and makes the calls that kind's real code makes, with numbers
// taken from the same places that code takes them (vmm/kvm/kvm_abi.h, linux/if_tun.h).
// A call the filter allows fails with EBADF on fd -1; one it forbids ends the
// child with SIGSYS.
#include "base/thread.h"
#include "vmm/isolation/seccomp.h"
#include "vmm/kvm/kvm_abi.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <functional>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

constexpr int Allowed = 0;
constexpr int Failed = 3;

// The child's end: Allowed, Failed (the call failed otherwise than with EBADF on
// fd -1, or the filter could not be installed), or the signal that ended it.
struct Outcome {
    bool exited { false };
    int code { -1 };
    int signal { 0 };
};

// Runs body in a child with the filters on (default mode: a forbidden call ends
// it); body returns the child's exit code.
Outcome in_child(std::function<int()> const& body)
{
    std::fflush(nullptr);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!strata::enable_seccomp(strata::SeccompMode::Kill))
            ::_exit(Failed);
        ::_exit(body());
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    Outcome out;
    out.exited = WIFEXITED(status);
    out.code = out.exited ? WEXITSTATUS(status) : -1;
    out.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return out;
}

// An ioctl on fd -1 as the kind's filter sees it: the request number in full, as
// the system call takes it.
int ioctl_as(strata::ThreadKind kind, unsigned long request)
{
    if (!strata::apply_seccomp(kind))
        return Failed;
    long r = ::syscall(SYS_ioctl, -1, request, 0);
    return r < 0 && errno == EBADF ? Allowed : Failed;
}

} // namespace

TEST_CASE("a vCPU may change the GSI routing by the number strata passes (an MSI-X vector programmed on virtio-pci)")
{
    // vmm/kvm/vm.cpp commits routes with kvm_abi::set_gsi_routing; linux/kvm.h's
    // KVM_SET_GSI_ROUTING is another number under C++.
    auto out = in_child([] { return ioctl_as(strata::ThreadKind::Vcpu, strata::kvm_abi::set_gsi_routing); });
    CHECK(out.exited);
    CHECK(out.code == Allowed);
    CHECK(out.signal == 0);
}

TEST_CASE("a vCPU may not create a VM: its filter ends the process")
{
    auto out = in_child([] { return ioctl_as(strata::ThreadKind::Vcpu, KVM_CREATE_VM); });
    CHECK_FALSE(out.exited);
    CHECK(out.signal == SIGSYS);
}

TEST_CASE("ioctl numbers are compared as 32-bit values, as the kernel reads them")
{
    auto out = in_child([] { return ioctl_as(strata::ThreadKind::Vcpu, 0xffffffff00000000UL | KVM_RUN); });
    CHECK(out.exited);
    CHECK(out.code == Allowed);
}

TEST_CASE("virtio-net's tap thread, started from a vCPU, runs under the device I/O filter and may set the tap's offloads")
{
    // Activation runs on the vCPU that wrote DRIVER_OK: a thread it starts must
    // not inherit the vCPU's filter (no epoll, no TUNSETOFFLOAD there).
    auto out = in_child([] {
        if (!strata::apply_seccomp(strata::ThreadKind::Vcpu))
            return Failed;
        int result = Failed;
        auto t = strata::start_thread(strata::ThreadKind::DeviceIo, "net-test", [&result] {
            long r = ::syscall(SYS_ioctl, -1, static_cast<unsigned long>(TUNSETOFFLOAD), 0);
            bool offload = r < 0 && errno == EBADF;
            r = ::syscall(SYS_epoll_ctl, -1, EPOLL_CTL_DEL, -1, nullptr);
            bool epoll = r < 0 && errno == EBADF;
            result = offload && epoll ? Allowed : Failed;
        });
        t.join();
        return result;
    });
    CHECK(out.exited);
    CHECK(out.code == Allowed);
    CHECK(out.signal == 0);
}

TEST_CASE("a lazy disk's fetcher may open sockets, a device I/O thread may not")
{
    auto fetcher = in_child([] {
        int result = Failed;
        auto t = strata::start_thread(strata::ThreadKind::Fetcher, "fetch-test", [&result] {
            int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            result = fd >= 0 ? Allowed : Failed;
            if (fd >= 0)
                ::close(fd);
        });
        t.join();
        return result;
    });
    CHECK(fetcher.exited);
    CHECK(fetcher.code == Allowed);

    auto device = in_child([] {
        auto t = strata::start_thread(strata::ThreadKind::DeviceIo, "dev-test", [] {
            int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0)
                ::close(fd);
        });
        t.join();
        return Allowed;
    });
    CHECK_FALSE(device.exited);
    CHECK(device.signal == SIGSYS);
}

TEST_CASE("the API's worker may look a tap up by name (an AF_UNIX socket's SIOCGIFINDEX) but not open an inet socket")
{
    // InstanceStart builds the machine on the worker; Tap::open asks
    // if_nametoindex, which glibc answers with an AF_UNIX datagram socket.
    auto lookup = in_child([] {
        if (!strata::apply_seccomp(strata::ThreadKind::ApiWorker))
            return Failed;
        return ::if_nametoindex("lo") != 0 ? Allowed : Failed;
    });
    CHECK(lookup.exited);
    CHECK(lookup.code == Allowed);

    auto inet = in_child([] {
        if (!strata::apply_seccomp(strata::ThreadKind::ApiWorker))
            return Failed;
        int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd >= 0)
            ::close(fd);
        return Allowed;
    });
    CHECK_FALSE(inet.exited);
    CHECK(inet.signal == SIGSYS);
}
