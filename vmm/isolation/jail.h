// The jail a stored VM's VMM runs in (`strata vmm --jail`, the default of
// `strata vms start`), built the way Firecracker's jailer builds one, but by the
// VMM process itself before it opens anything of the guest's:
//
//  - the calling process stays on the host as the jail's supervisor: it makes the
//    VM's cgroup, forwards the signals it gets (SIGTERM, SIGINT, SIGHUP, SIGQUIT,
//    SIGUSR1, SIGUSR2) to the jailed VMM, waits for it, removes the cgroup and
//    exits with its status, under a seccomp filter of its own that allows
//    only that (seccomp.h); if it is SIGKILLed the VMM follows
//    (PR_SET_PDEATHSIG). The pid file names the jailed VMM itself (its host pid),
//    so `vms stop` and /proc/PID show the VMM; SIGTERM and SIGINT stay blocked in
//    all its threads, read by its signalfd: PID 1 of a namespace would drop a
//    signal left at its default action. Once the VMM ended it runs the spec's
//    after_vmm (e.g. deletes the VM's netns=auto namespaces).
//  - the jailed VMM is PID 1 of a new PID namespace, in a new mount namespace
//    whose root is a small read-only tmpfs at <runtime folder>/root holding only
//    the bind mounts listed (each at its host path, so that no path the VMM uses
//    changes), after pivot_root and a detached unmount of the old root; out of
//    the host's network namespace when the VM attaches no host tap and has no
//    lazily pulled disk (JailSpec::new_network): root's jails share one empty
//    namespace, kept at
//    /run/strata/netns-none (made by the first; jail.cpp says why), others
//    make one of their own;
//    in the cgroup (v2 when /sys/fs/cgroup has cgroup.controllers, else v1;
//    on v2 the VMM is created in it, clone_into_cgroup.h, or where the kernel
//    refuses that the supervisor moves it in; on v1 the VMM moves itself in)
//    with memory, CPU and PID limits and a CPU weight of `cpus` default tasks; with
//    RLIMIT_NOFILE and RLIMIT_FSIZE; as the
//    given uid/gid, with no capabilities beyond `keep_capabilities` and
//    PR_SET_NO_NEW_PRIVS; and, where the kernel has Landlock (landlock.h), able
//    to open only the bound paths, each as bound (a kernel without it is
//    logged as "strata: jail: lacks Landlock (...)").
//
// What needs root (namespaces, mounts, cgroups, another uid) is skipped when the
// caller lacks the privilege; each step skipped is written to stderr (the VMM's
// log) as "strata: jail: lacks ...", and the rest still applies.
//
// Threading: enter_jail forks (or clones, without running fork handlers) and
// unshares, so it must run while the process has one thread only (before
// seccomp's spawner or any device thread starts).
#pragma once

#include "base/result.h"
#include "vmm/isolation/seccomp.h"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace strata {

struct JailBind {
    std::string path;   // a host file, folder or device, mounted at the same path
    bool writable { false };
    bool optional { false }; // a missing path is left out rather than an error
    // Granted by the jail's Landlock rules (landlock.h). Only a test hook leaves a
    // bound path out, to show that Landlock holds where the mounts would not.
    bool landlock { true };
};

struct JailSpec {
    std::string runtime_dir;      // the jail's root is runtime_dir + "/root"
    // With another uid: the runtime folder and its files are that uid's while the
    // VMM runs (a VM's runtime folder); otherwise their owner is the caller's affair.
    bool lend_runtime_dir { true };
    std::string cgroup_name;      // a folder name, made under the caller's cgroup
    std::vector<JailBind> binds;
    bool new_network { false };   // only when the VMM needs nothing of the host's network
    std::optional<uid_t> uid;     // the jailed VMM's ids; unset: stay
    std::optional<gid_t> gid;
    std::vector<int> keep_capabilities; // e.g. CAP_NET_ADMIN to attach taps
    std::uint64_t memory_max { 0 };     // bytes; 0: no limit
    std::uint32_t cpus { 0 };           // cores' worth of CPU time; 0: no limit
    std::uint64_t pids_max { 0 };       // 0: no limit
    std::uint64_t open_files { 2048 };  // RLIMIT_NOFILE
    std::uint64_t file_size { 0 };      // RLIMIT_FSIZE in bytes; 0: unlimited
    bool landlock { true };             // restrict to the binds with Landlock too
    // Run by the supervisor once the VMM ended, before it exits: what the VMM
    // made on the host and can no longer undo from inside (netns=auto
    // namespaces, prepared_nets.h). Not run for a jail without a supervisor.
    std::function<void()> after_vmm;
    // The supervisor's own seccomp filter (seccomp.h apply_supervisor_seccomp),
    // installed once the VMM runs; the VMM's --seccomp mode.
    SeccompMode supervisor_seccomp { SeccompMode::Kill };
};

struct Jailed {
    // The jailed VMM's pid on the host, for the pid file: known once
    // await_cgroup returned.
    pid_t host_pid { 0 };
    bool supervised { false }; // a supervisor runs (and runs after_vmm)
    int cgroup_pending { -1 };  // the supervisor's go-ahead, read by await_cgroup
    std::vector<std::string> lacks; // what the jail could not apply, already logged
};

// Builds the jail and returns in the jailed VMM; the calling process becomes the
// supervisor and never returns from here (it exits with the VMM's status). An
// error is returned only before the fork, or in the VMM when a step it could take
// failed (the VMM must not run half-jailed then).
[[nodiscard]] Result<Jailed> enter_jail(JailSpec const& spec);

// In the jailed VMM: learns its host pid from the supervisor, and waits until
// it is in its cgroup. On v2 it was created there (no wait), and on v1 it moved
// itself in within enter_jail (in some 0.1 ms). Only on a v2 host whose kernel
// refused that creation (older than 5.7, no delegation) does the supervisor
// move it, which takes some 10 ms (the kernel waits for an RCU grace period),
// so the VMM goes on setting itself up (filters, threads, sockets) meanwhile
// and waits only here, which must come before it allocates guest memory:
// memory is charged to the cgroup it was allocated in. Does nothing for a VMM
// without a supervisor. A supervisor that died before letting it go ends the
// VMM.
[[nodiscard]] Status await_cgroup(Jailed& jailed);

// Gives a runtime folder that a jail with another uid held (and the files the VMM
// made in it) back to the caller: what the supervisor does when the VMM ends, and
// what `vms start` does for a folder a SIGKILLed supervisor left (only with no
// VMM holding its lock).
void give_back_runtime_dir(std::string const& dir);
// Gives the folder and its files to uid/gid (lchown: links are not followed).
[[nodiscard]] Status lend_runtime_dir(std::string const& dir, uid_t uid, gid_t gid);

} // namespace strata
