// Creating the jailed VMM (jail.h) inside its cgroup v2 folder from its first
// instant, with clone3's CLONE_INTO_CGROUP (Linux 5.7+), rather than forking it
// and moving it in: moving a whole process into a cgroup waits for an RCU grace
// period (jail.cpp, Cgroup), and that wait was on every jailed start's path.
//
// The child is made as PID 1 of a new PID namespace by the same call
// (CLONE_NEWPID), not by an unshare before it: the kernel checks the target
// cgroup only after it gave the child its pid, and a namespace whose first
// process failed takes no other (a fork into it then fails with ENOMEM). Made
// by the call, a refused namespace goes with the refused child, and the caller
// can still unshare and fork as before.
//
// What glibc's fork does for its child that a raw clone would not is done here
// too (clone_into_cgroup.cpp says what); fork handlers (pthread_atfork) do not
// run, which is why the caller must be one thread with none registered that
// matter (strata and the libraries it links register none).
//
// Threading: call only while the process has one thread (the jail's rule).
#pragma once

#include "base/result.h"

#include <sys/types.h>

namespace strata {

// Returns as fork does: the child's pid (on the host) in the parent, 0 in the
// child, which is PID 1 of a new PID namespace and in the cgroup `cgroup_fd`
// names (a v2 cgroup folder, opened O_RDONLY or O_PATH; the child inherits the
// descriptor and should close it). An error means no child and no namespace:
// the kernel has no clone3 or no CLONE_INTO_CGROUP (ENOSYS, EINVAL, E2BIG),
// refuses the cgroup (EPERM, EACCES without delegation; EBUSY, EOPNOTSUPP for a
// folder that cannot hold processes), or glibc's thread record could not be
// found (PR_GET_TID_ADDRESS needs CONFIG_CHECKPOINT_RESTORE).
[[nodiscard]] Result<pid_t> clone_into_cgroup(int cgroup_fd);

} // namespace strata
