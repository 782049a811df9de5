// clone3 with CLONE_INTO_CGROUP for the jailed VMM (clone_into_cgroup.h), with
// the parts of glibc's fork that the child relies on.
#include "vmm/isolation/clone_into_cgroup.h"

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <linux/futex.h>
#include <linux/sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace strata {

Result<pid_t> clone_into_cgroup(int cgroup_fd)
{
    // glibc keeps each thread's kernel tid in its thread record, where its
    // recursive and error-checking mutexes look for their owner and
    // pthread_kill for its target. It gives that field's address to the kernel
    // at start (set_tid_address) and in fork's child (CLONE_CHILD_CLEARTID),
    // and fork has the kernel write the child's tid there (CLONE_CHILD_SETTID).
    // Read back, the address lets this clone do the same; without it the child
    // would keep this process's tid, a pid of the host's namespace.
    int* tid_field = nullptr;
    if (::prctl(PR_GET_TID_ADDRESS, &tid_field, 0, 0, 0) != 0)
        return errno_error("find glibc's thread id (PR_GET_TID_ADDRESS)");
    // SAFETY: the kernel's record of this thread's clear_child_tid, which glibc
    // set to a field of its own thread record: this process's memory. Checked
    // to hold this thread's tid before the child's is written there.
    if (tid_field == nullptr || *tid_field != ::gettid())
        return make_error(ErrorKind::Unsupported, "glibc's thread id is not where the kernel would clear it");
    // The kernel gives a new process no robust mutex list; glibc's fork
    // registers the thread's again in the child. Its head is read here and
    // registered in the child below; the list itself is empty, since strata
    // holds no robust mutex (glibc's fork empties it for the child).
    robust_list_head* robust = nullptr;
    std::size_t robust_size = 0;
    if (::syscall(SYS_get_robust_list, 0, &robust, &robust_size) != 0)
        robust = nullptr;

    clone_args args {};
    args.flags = CLONE_NEWPID | CLONE_INTO_CGROUP | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    // SAFETY: clone_args carries user addresses as 64-bit integers.
    args.child_tid = reinterpret_cast<std::uintptr_t>(tid_field);
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<std::uint64_t>(static_cast<unsigned>(cgroup_fd));
    // No stack of its own: the child goes on on a copy of this one, as after fork.
    long const pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0)
        return errno_error("clone3 into the cgroup");
    if (pid == 0 && robust != nullptr)
        ::syscall(SYS_set_robust_list, robust, robust_size);
    return static_cast<pid_t>(pid);
}

} // namespace strata
