#include "devices/virtio/rate_limited_log.h"

#include <cstdio>

namespace strata::virtio {

void RateLimitedLog::warn(std::string const& message)
{
    auto const now = std::chrono::steady_clock::now();
    if (now - m_window >= std::chrono::seconds(1)) {
        if (m_suppressed > 0)
            std::fprintf(stderr, "%s: %u more messages suppressed\n", m_prefix.c_str(), m_suppressed);
        m_window = now;
        m_in_window = 0;
        m_suppressed = 0;
    }
    if (m_in_window >= m_burst) {
        ++m_suppressed;
        return;
    }
    ++m_in_window;
    std::fprintf(stderr, "%s: %s\n", m_prefix.c_str(), message.c_str());
}

} // namespace strata::virtio
