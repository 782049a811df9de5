// Running host tools (mke2fs, fakeroot, ...) as child processes: finding the
// program, running it with an argv vector (never through a shell's parsing of a
// joined string) and collecting what it printed, so callers can put the tool's own
// words into their error messages.
//
// Threading: run_host_tool blocks the calling thread until the child exits. It
// uses posix_spawn, which is safe to call from a multi-threaded process.
#pragma once

#include "base/result.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace strata {

struct HostToolResult {
    bool exited { false }; // ended through exit(); exit_code is valid
    int exit_code { -1 };
    int signal { 0 };      // the signal that ended it, when !exited
    std::string output;    // stdout and stderr, interleaved as printed

    bool succeeded() const { return exited && exit_code == 0; }
};

// The absolute path of an executable named name: searched in $PATH and then in
// /usr/sbin and /sbin, because Debian leaves the sbin folders out of an ordinary
// user's PATH while tools such as mke2fs live there and work for any user.
// Unavailable, naming the program and package_hint, when there is none.
[[nodiscard]] Result<std::string> find_host_tool(std::string_view name, std::string_view package_hint);

// Runs argv (argv[0] an absolute path) with env added to this process's
// environment, stdin from /dev/null; its stdout and stderr are captured together.
// Failing to start it is an error; a tool that fails is a result to judge.
[[nodiscard]] Result<HostToolResult> run_host_tool(std::vector<std::string> const& argv,
    std::vector<std::pair<std::string, std::string>> const& env = {});

} // namespace strata
