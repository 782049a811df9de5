// Landlock (the kernel's unprivileged access control, Linux 5.13+) as a layer of
// the jail (jail.h) beneath pivot_root: the jailed VMM may open only the paths
// its jail binds, each only as bound (read-only or writable; devices read, write
// and, from ABI 5, ioctl), even if something else were reachable in its root
// (a mount made by mistake, a path a later change adds to the root). Where the
// kernel has ABI 6, abstract Unix sockets and signals are scoped to the VMM too.
//
// The rules take every file-system right the running kernel's ABI knows (1-3,
// 5), so a newer kernel is never asked for a right it lacks and an older one
// still restricts what it can. A kernel without Landlock (ENOSYS, or
// EOPNOTSUPP when it is built in but not enabled) is no error: the jail says
// "strata: jail: lacks Landlock (...)" in the VMM's log and goes on.
//
// Threading: restrict_to applies to the calling thread and the threads it
// starts later: call it while the process has one thread (the jail does).
#pragma once

#include "base/result.h"

#include <string>
#include <vector>

namespace strata {

struct LandlockPath {
    std::string path;
    bool writable { false };
};

struct LandlockResult {
    int abi { 0 };           // 0: the kernel lacks Landlock
    std::string why_not;     // with abi 0: what the kernel said
};

// The Landlock ABI version of the running kernel; 0 without Landlock.
int landlock_abi();

// Opens each path (O_PATH; a missing one is left out), builds the ruleset and
// restricts the calling thread. Needs PR_SET_NO_NEW_PRIVS (or CAP_SYS_ADMIN).
// An error when the kernel has Landlock but refused a step (the VMM must not
// run believing it restricted).
[[nodiscard]] Result<LandlockResult> landlock_restrict_to(std::vector<LandlockPath> const& paths);

} // namespace strata
