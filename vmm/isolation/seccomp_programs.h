// The BPF programs of the VMM's threads and its spawner (seccomp_rules.h's
// compiled_programs), compiled from the rules by libseccomp at build time:
// seccomp_compile writes their source into the build tree. A thread then only
// loads its program (seccomp.cpp); building a filter with libseccomp cost each
// thread 0.3-1.5 ms on this host's CPU and, inside the emulated KVM machine,
// added some 1.2-2.5 s to a blkbench run of `strata run` (default against off).
// Threading: constant data.
#pragma once

#include "vmm/isolation/seccomp_rules.h"

#include <linux/filter.h>

#include <span>

namespace strata {

// program's BPF; its default action is SECCOMP_RET_LOG when `log`, otherwise
// SECCOMP_RET_TRAP. Empty for a program that is not compiled (the supervisor's).
std::span<sock_filter const> compiled_seccomp_program(seccomp_rules::Program program, bool log);

} // namespace strata
