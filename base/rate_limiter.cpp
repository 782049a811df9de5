#include "base/rate_limiter.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <sys/timerfd.h>
#include <unistd.h>

namespace strata {

namespace {

constexpr std::uint64_t NsPerMs = 1'000'000;

Status check_bucket(TokenBucketConfig const& b, char const* which)
{
    if (b.size != 0 && b.refill_time_ms == 0)
        return make_error(ErrorKind::Usage, std::string(which) + " bucket: a size needs a refill_time of at least 1 ms");
    if (b.size > (std::uint64_t(1) << 50) || b.one_time_burst > (std::uint64_t(1) << 50) || b.refill_time_ms > (std::uint64_t(1) << 32))
        return make_error(ErrorKind::Usage, std::string(which) + " bucket: size, one_time_burst or refill_time out of range");
    return ok();
}

} // namespace

Status check_rate_limiter(RateLimiterConfig const& config)
{
    STRATA_TRY(check_bucket(config.bandwidth, "bandwidth"));
    return check_bucket(config.ops, "ops");
}

bool valid_rate_limit_group(std::string_view group)
{
    if (group.empty() || group.size() > 20 || group == "." || group == "..")
        return false;
    return std::all_of(group.begin(), group.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

Status check_rate_limit_group(std::string const& group)
{
    if (!valid_rate_limit_group(group))
        return make_error(ErrorKind::Usage, "rate limit group '" + group + "' must be 1-20 letters, digits, '-', '_' or '.'");
    return ok();
}

TokenBucket::TokenBucket(TokenBucketConfig const& config, Clock::time_point now)
    : m_config(config)
    , m_budget(static_cast<std::int64_t>(config.size))
    , m_burst(config.one_time_burst)
    , m_last(now)
{
}

void TokenBucket::refill(Clock::time_point now)
{
    if (now <= m_last)
        return;
    auto const elapsed = static_cast<unsigned __int128>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - m_last).count());
    auto const refill_ns = static_cast<unsigned __int128>(m_config.refill_time_ms) * NsPerMs;
    auto const size = static_cast<std::int64_t>(m_config.size);
    if (m_budget >= size) {
        m_last = now;
        return;
    }
    // Whole tokens only; the time of the fraction left over stays unspent
    // (m_last moves by exactly the time the added tokens took), so no rate is lost
    // to rounding however often this runs.
    auto const add = elapsed * static_cast<unsigned __int128>(m_config.size) / refill_ns;
    if (add == 0)
        return;
    auto const room = static_cast<unsigned __int128>(size - m_budget);
    if (add >= room) {
        m_budget = size;
        m_last = now;
        return;
    }
    m_budget += static_cast<std::int64_t>(add);
    m_last += std::chrono::nanoseconds(static_cast<std::int64_t>(add * refill_ns / static_cast<unsigned __int128>(m_config.size)));
}

std::uint64_t TokenBucket::wait_for(std::uint64_t tokens, Clock::time_point now)
{
    if (unlimited() || tokens <= m_burst)
        return 0;
    refill(now);
    std::uint64_t const rest = tokens - m_burst;
    // A request larger than the bucket waits only until the bucket holds no debt
    // (and leaves debt). Waiting for a full bucket instead would lose, at every
    // such request, the time between the bucket filling and the device coming
    // back to take it (a full bucket refills no more): on a loaded host, where
    // the device's timer wakes tens of milliseconds late, 1 MiB requests under a
    // 0.9 MiB bucket (a 9 MiB/s limit) went at 5.7 MiB/s. With the debt as the
    // bar, a late device finds the time it was late in the bucket, up to a whole
    // bucket's worth. What it lets through stays within the bucket's size plus
    // one request plus size per refill_time over any span.
    auto const need = rest > m_config.size ? std::int64_t(0) : static_cast<std::int64_t>(rest);
    if (m_budget >= need)
        return 0;
    auto const missing = static_cast<unsigned __int128>(need - m_budget);
    auto const refill_ns = static_cast<unsigned __int128>(m_config.refill_time_ms) * NsPerMs;
    auto ns = missing * refill_ns / m_config.size;
    // The time already run towards the next token counts.
    auto const since = static_cast<unsigned __int128>(std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(now - m_last).count()));
    ns = ns > since ? ns - since : 0;
    return static_cast<std::uint64_t>(std::max<unsigned __int128>(ns, 1));
}

void TokenBucket::take(std::uint64_t tokens)
{
    if (unlimited())
        return;
    std::uint64_t const from_burst = std::min(tokens, m_burst);
    m_burst -= from_burst;
    m_budget -= static_cast<std::int64_t>(tokens - from_burst);
}

void TokenBucket::give_back(std::uint64_t tokens)
{
    if (unlimited())
        return;
    m_budget = std::min(static_cast<std::int64_t>(m_config.size), m_budget + static_cast<std::int64_t>(tokens));
}

TokenBucket::Level TokenBucket::level(Clock::time_point now)
{
    refill(now);
    return Level { m_budget, m_burst };
}

void TokenBucket::set_level(Level const& level, Clock::time_point now)
{
    auto const size = static_cast<std::int64_t>(m_config.size);
    // A debt (a request larger than the bucket) is bounded by -size here, so a
    // corrupt level cannot stall a device for long; a larger real debt is
    // forgiven.
    m_budget = std::clamp<std::int64_t>(level.budget, -size, size);
    m_burst = std::min(level.burst, m_config.one_time_burst);
    m_last = now;
}

RateLimiter::State RateLimiter::state()
{
    std::lock_guard guard(m_lock);
    auto const now = TokenBucket::Clock::now();
    return State { m_config, m_bandwidth.level(now), m_ops.level(now) };
}

void RateLimiter::restore_state(State const& state)
{
    std::lock_guard guard(m_lock);
    if (!(state.config == m_config))
        return;
    auto const now = TokenBucket::Clock::now();
    m_bandwidth.set_level(state.bandwidth, now);
    m_ops.set_level(state.ops, now);
}

RateLimiter::RateLimiter(RateLimiterConfig const& config)
{
    update(config);
}

std::uint64_t RateLimiter::try_consume(std::uint64_t bytes, std::uint64_t ops)
{
    if (m_unlimited.load(std::memory_order_acquire))
        return 0;
    std::lock_guard guard(m_lock);
    auto const now = TokenBucket::Clock::now();
    std::uint64_t const wait = std::max(m_bandwidth.wait_for(bytes, now), m_ops.wait_for(ops, now));
    if (wait != 0)
        return wait;
    m_bandwidth.take(bytes);
    m_ops.take(ops);
    return 0;
}

void RateLimiter::give_back(std::uint64_t bytes, std::uint64_t ops)
{
    if (m_unlimited.load(std::memory_order_acquire))
        return;
    std::lock_guard guard(m_lock);
    m_bandwidth.give_back(bytes);
    m_ops.give_back(ops);
}

void RateLimiter::update(RateLimiterConfig const& config)
{
    std::lock_guard guard(m_lock);
    auto const now = TokenBucket::Clock::now();
    m_config = config;
    m_bandwidth = TokenBucket(config.bandwidth, now);
    m_ops = TokenBucket(config.ops, now);
    m_unlimited.store(config.unlimited(), std::memory_order_release);
}

RateLimiterConfig RateLimiter::config() const
{
    std::lock_guard guard(m_lock);
    return m_config;
}

Result<RateLimitTimer> RateLimitTimer::create()
{
    int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return errno_error("timerfd_create for a rate limiter");
    return RateLimitTimer(Fd(fd));
}

void RateLimitTimer::arm(std::uint64_t ns)
{
    ns = std::max<std::uint64_t>(ns, 1);
    itimerspec spec {};
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (::timerfd_settime(m_fd.get(), 0, &spec, nullptr) == 0)
        m_armed = true;
}

bool RateLimitTimer::consume()
{
    std::uint64_t expirations = 0;
    bool fired = ::read(m_fd.get(), &expirations, sizeof expirations) == static_cast<ssize_t>(sizeof expirations);
    if (fired)
        m_armed = false;
    return fired;
}

} // namespace strata
