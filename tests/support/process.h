// Test support: runs a child process (strata, qemu-system-x86_64, qemu-img, a
// checker) with an argv vector, an optional stdin file, extra environment and a
// timeout, and captures its stdout, stderr and how it ended. The child gets its own
// process group, and on timeout the whole group is killed with SIGKILL, so a hung
// guest never outlives the test.
//
// Threading: run_process blocks the calling thread until the child ends or the
// timeout expires; it forks, so call it from a process whose other threads hold no
// locks the child could need (the child only calls async-signal-safe functions).
#pragma once

#include "base/result.h"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace strata::test {

struct ProcessOptions {
    std::vector<std::string> argv;          // argv[0] is looked up in PATH
    std::optional<std::string> stdin_path;  // default: /dev/null
    std::vector<std::pair<std::string, std::string>> env; // set on top of the parent's
    std::chrono::milliseconds timeout { 60'000 };
    std::string cwd;                        // empty: the parent's
    // Called on the calling thread with the whole of stderr so far each time
    // more of it arrives, while the child runs: for a test that acts when the
    // child says something (and must not wait for it to end).
    std::function<void(std::string const&)> on_stderr;
    // Asked with stdout and stderr so far each time more of either arrives: true
    // ends the child (SIGKILL to its process group) and the call returns with
    // `stopped` set. For a child that would otherwise run until the timeout,
    // such as a VM that restarts forever.
    std::function<bool(std::string const& out, std::string const& err)> stop_when;
};

struct ProcessResult {
    bool exited { false };     // ended through exit(); exit_code is valid
    int exit_code { -1 };
    int signal { 0 };          // the signal that ended it, when !exited
    bool timed_out { false };  // killed by run_process after the timeout
    bool stopped { false };    // killed by run_process when stop_when said so
    std::string out;
    std::string err;
    double seconds { 0 };      // wall time from spawn to reaping

    // One line for test failure messages: how it ended and the tail of stderr.
    std::string describe() const;
};

// Spawn failures (no such program, fork failure) are errors; a child that fails
// or times out is a result, for the caller to judge.
[[nodiscard]] Result<ProcessResult> run_process(ProcessOptions const& options);

// Convenience: run with a timeout and no stdin or environment changes.
[[nodiscard]] Result<ProcessResult> run_process(std::vector<std::string> argv,
    std::chrono::milliseconds timeout = std::chrono::milliseconds { 60'000 });

// Quotes argv for logs and failure messages (not for a shell).
std::string join_argv(std::vector<std::string> const& argv);

} // namespace strata::test
