// RateLimitedLog: warnings about guest behaviour (bad chains, failed requests)
// for every virtio device. A guest decides how often it misbehaves, so the log
// prints at most `burst` messages a second and then a count of what it left out.
// Threading: one instance per device, used by that device's own thread only.
#pragma once

#include <chrono>
#include <string>

namespace strata::virtio {

class RateLimitedLog {
public:
    explicit RateLimitedLog(std::string prefix, unsigned burst = 10)
        : m_prefix(std::move(prefix))
        , m_burst(burst)
    {
    }
    void warn(std::string const& message);

private:
    std::string m_prefix;
    unsigned m_burst;
    std::chrono::steady_clock::time_point m_window {};
    unsigned m_in_window { 0 };
    unsigned m_suppressed { 0 };
};

} // namespace strata::virtio
