// seccomp filters per thread kind, as Firecracker and Cloud Hypervisor filter
// their VMMs: every thread of a VMM process runs under a filter that allows only
// the system calls its kind needs (base/thread.h names the kinds), ioctl numbers
// among them compared as 32-bit values. The rules are in seccomp_rules.h;
// libseccomp compiles them into BPF at build time, as Firecracker's seccompiler
// does (seccomp_programs.h), so a thread only loads its program.
//
// Filters stack in Linux: a thread inherits its creator's filter and can only add
// to it, so a vCPU thread that starts a device's I/O thread (virtio activation
// happens on the vCPU that writes DRIVER_OK) would pass its own narrow filter on.
// Once enable_seccomp ran, every start_thread therefore goes through one spawner
// thread whose filter is the union of every kind's; the new thread installs its
// own kind's filter first thing, so its effective filter is its kind's alone.
// The main thread installs the Vmm filter itself (apply_seccomp) once the API
// serves and the machine is built, before it waits for the guest to end.
//
// A forbidden system call, in the default mode, raises SIGSYS (SECCOMP_RET_TRAP):
// the handler writes "strata: seccomp: ..." with the thread's kind and name and
// the system call's number to stderr (the VMM log), then ends the process by
// SIGSYS. The core dump is disabled when the filters are on: it would hold the
// guest's memory. `log` allows and logs to the kernel's audit log (dmesg shows
// "type=1326 ... comm=<thread name> syscall=N"), for diagnosis; `off` installs
// nothing.
//
// Test hook (STRATA_TEST_HOOKS builds): STRATA_TEST_SECCOMP_FORBIDDEN=<kind name>
// (vmm, api, api-worker, vcpu, device-io, fetcher; supervisor: see below) makes the first thread of that kind
// call getppid(2), which no filter allows, right after installing its filter.
// Threading: enable_seccomp once on the main thread before any start_thread
// (but one: a stored VM's VMM starts the thread that prepares its VM,
// vmm/prepared_vm.h, just before; it runs unfiltered, as the main thread does
// while it builds the machine, and ends before the guest runs); apply_seccomp on
// the thread to be filtered.
#pragma once

#include "base/result.h"
#include "base/thread.h"

#include <string>
#include <sys/types.h>

namespace strata {

enum class SeccompMode {
    Kill, // "default": a forbidden system call ends the VMM with SIGSYS and a message
    Log,  // allowed, and logged by the kernel
    Off,
};

// "default", "log" or "off"; anything else is a Usage error.
[[nodiscard]] Result<SeccompMode> parse_seccomp_mode(std::string const& text);

// The mode a VMM command uses when its --seccomp was not given: the environment's
// STRATA_SECCOMP when set (the same words), otherwise Kill ("default").
[[nodiscard]] Result<SeccompMode> default_seccomp_mode();

// Turns filtering on for the rest of the process (see above); Off does nothing.
[[nodiscard]] Status enable_seccomp(SeccompMode mode);

// The mode enable_seccomp turned on; Off before it ran.
[[nodiscard]] SeccompMode seccomp_mode();

// Installs the filter of `kind` on the calling thread; nothing when filtering is
// off or was never enabled.
[[nodiscard]] Status apply_seccomp(ThreadKind kind);

// The jail's supervisor (jail.h): a process of its own on the host, one thread,
// that once the VMM runs only waits for it, forwards signals to it and cleans up
// after it (the cgroup, the runtime folder's owner, netns=auto namespaces). Its
// filter allows that and nothing else: no exec, no fork, no sockets, no KVM,
// and kill(2) only of `vmm` and of itself. A forbidden call raises SIGSYS with
// the same message as a VMM thread's (kind "supervisor"); the VMM follows it
// (PR_SET_PDEATHSIG). Off installs nothing. Needs no enable_seccomp: the
// supervisor is not the VMM process. Test hook: STRATA_TEST_SECCOMP_FORBIDDEN=
// supervisor calls getppid(2) right after the filter is installed.
[[nodiscard]] Status apply_supervisor_seccomp(SeccompMode mode, pid_t vmm);

} // namespace strata
