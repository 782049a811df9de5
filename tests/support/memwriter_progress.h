// Test support: memwriter's progress as its serial output reports it
// ("memwriter: round R ok" after each checked round). The snapshot and
// machine-image memory tests read it from a log file to tell how far a guest got
// before and after a restore.
//
// Threading: plain functions, any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace strata::test {

// The highest "memwriter: round R ok" in a log, or 0.
inline std::uint64_t memwriter_last_ok(std::string const& log)
{
    std::uint64_t best = 0;
    std::string const key = "memwriter: round ";
    for (auto at = log.find(key); at != std::string::npos; at = log.find(key, at + 1)) {
        char* end = nullptr;
        auto r = std::strtoull(log.c_str() + at + key.size(), &end, 10);
        if (std::string_view(end).starts_with(" ok\n"))
            best = std::max<std::uint64_t>(best, r);
    }
    return best;
}

}
