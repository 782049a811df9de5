// Test support: seqwriter's progress as its serial output reports it. seqwriter
// prints `seqwriter: round R maxgap_us G` once round R has been written and
// flushed on every disk (every 100th round). A capture taken after that line
// appeared must hold round R or later on every disk, so capture tests wait for
// a new line (not a fixed sleep) before each capture and then ask seqcheck for
// `--min-round R`: all-zero or stale disks pass seqcheck's consistency rules by
// design, and only the round the guest is known to have reached tells a capture
// of a busy guest from one of nothing.
//
// Threading: plain functions; wait_for_progress blocks the calling thread.
#pragma once

#include "tests/support/read_text.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

namespace strata::test {

// The highest round reported in a seqwriter serial log so far; nullopt before
// the first progress line (or when the file does not exist yet).
inline std::optional<std::uint64_t> last_reported_round(std::string const& log_path)
{
    std::string const s = read_text(log_path);
    std::string const marker = "seqwriter: round ";
    std::optional<std::uint64_t> last;
    for (auto at = s.find(marker); at != std::string::npos; at = s.find(marker, at + 1)) {
        char const* digits = s.c_str() + at + marker.size();
        char* end = nullptr;
        std::uint64_t r = std::strtoull(digits, &end, 10);
        if (end != digits && *end == ' ' && (!last || r > *last))
            last = r;
    }
    return last;
}

// Waits until the log reports a round above `above` (any round when nullopt)
// and returns the highest reported; nullopt if none came within the timeout.
inline std::optional<std::uint64_t> wait_for_progress(std::string const& log_path, std::optional<std::uint64_t> above,
    std::chrono::milliseconds timeout = std::chrono::seconds(60))
{
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto r = last_reported_round(log_path);
        if (r && (!above || *r > *above))
            return r;
        if (std::chrono::steady_clock::now() >= deadline)
            return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

} // namespace strata::test
