// What each kind of VMM thread may call (seccomp.h), as libseccomp rules: the
// lists below, and build_filter, which turns one program's lists into a filter.
// The VMM does not compile these at run time: seccomp_compile (a build tool)
// exports every thread kind's filter, and the spawner's, as BPF into the VMM's
// binary (seccomp_programs.h), so a thread only loads its program. Only the jail's
// supervisor builds its filter when it runs, because the filter names its VMM's
// pid. The lists were taken from what each kind of thread calls in the test suite
// (run with STRATA_SECCOMP=log and read back from the kernel's audit log) and from
// the code paths behind it; a system call is in a list because a path of that kind
// of thread makes it.
// Threading: plain functions; a filter build_filter returns is the caller's.
#pragma once

#include "base/result.h"

#include <seccomp.h>

#include <cstdint>
#include <functional>

namespace strata::seccomp_rules {

// One BPF program each: the thread kinds of base/thread.h, the spawner (the union
// of every kind's lists and what making threads takes), and the supervisor.
enum class Program { Vmm, ApiIo, ApiWorker, Vcpu, DeviceIo, Fetcher, Spawner, Supervisor };

// Every program the VMM loads, compiled at build time (all but the supervisor's).
inline constexpr Program compiled_programs[] = { Program::Vmm, Program::ApiIo, Program::ApiWorker, Program::Vcpu,
    Program::DeviceIo, Program::Fetcher, Program::Spawner };

char const* program_name(Program program);

// A filter with program's rules whose default action is `deny` (SCMP_ACT_TRAP or
// SCMP_ACT_LOG); `extra` adds rules of the caller's own before it returns (a
// negative errno from it is the error). The caller loads or exports it and then
// releases it with seccomp_release.
[[nodiscard]] Result<scmp_filter_ctx> build_filter(Program program, std::uint32_t deny,
    std::function<int(scmp_filter_ctx)> const& extra = {});

} // namespace strata::seccomp_rules
