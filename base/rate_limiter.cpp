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

std::int64_t TokenBucket::cap() const
{
    auto const size = static_cast<std::int64_t>(m_config.size);
    return m_waiting > m_config.size ? static_cast<std::int64_t>(m_waiting) + size : size;
}

void TokenBucket::forget_waiting()
{
    if (m_waiting == 0)
        return;
    m_waiting = 0;
    m_budget = std::min(m_budget, static_cast<std::int64_t>(m_config.size));
}

void TokenBucket::refill(Clock::time_point now)
{
    if (now <= m_last)
        return;
    auto const elapsed = static_cast<unsigned __int128>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - m_last).count());
    auto const refill_ns = static_cast<unsigned __int128>(m_config.refill_time_ms) * NsPerMs;
    auto const limit = cap();
    if (m_budget >= limit) {
        m_last = now;
        forget_waiting();
        return;
    }
    // Whole tokens only; the time of the fraction left over stays unspent
    // (m_last moves by exactly the time the added tokens took), so no rate is lost
    // to rounding however often this runs.
    auto const add = elapsed * static_cast<unsigned __int128>(m_config.size) / refill_ns;
    if (add == 0)
        return;
    auto const room = static_cast<unsigned __int128>(limit - m_budget);
    if (add >= room) {
        m_budget = limit;
        m_last = now;
        // Full beyond the size: the request that raised the cap is later than
        // a whole refill_time past the moment its tokens were there, so it is
        // taken to be gone (its queue was reset, its frame dropped). Kept, the
        // raised cap would let that much more through at once to anyone.
        forget_waiting();
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
    auto const need = static_cast<std::int64_t>(rest);
    if (m_budget >= need)
        return 0;
    // A request larger than the bucket waits for its whole cost: the bucket
    // fills beyond its size for it from here on (the time it sat full before
    // this request came stays spent, as for any request). Taking it once the
    // bucket held no debt instead (the rule before) let it through at once from
    // a full bucket, up to a bucket more than the rate allows over a span. The
    // cap keeps one size above the cost, so a device that comes back late to
    // its timer (tens of milliseconds inside an emulated machine on a loaded
    // host) finds the time it was late in the bucket instead of losing it at
    // every request: 1 MiB requests under a 0.9 MiB bucket went at 5.7 MiB/s of
    // 9 when such a request had to find the bucket exactly full.
    if (rest > m_config.size)
        m_waiting = std::max(m_waiting, rest);
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
    // The request that waited is taken: what a late device had over its cost
    // stays (up to the size), and the cap is the size again. A smaller request
    // (another disk of a group) leaves the waiting one's tokens growing.
    if (m_waiting != 0 && tokens - from_burst >= m_waiting) {
        m_waiting = 0;
        m_budget = std::min(m_budget, static_cast<std::int64_t>(m_config.size));
    }
}

void TokenBucket::give_back(std::uint64_t tokens)
{
    if (unlimited())
        return;
    // A request larger than the bucket that did not start after all (the
    // backend was full) has cleared its wait in take(), so the cap is the size
    // again and it waits anew for what it has over the size.
    // Up to the cap, not the size: a smaller request giving its tokens back
    // must not take away what a larger, waiting one has gathered past the size.
    m_budget = std::min(cap(), m_budget + static_cast<std::int64_t>(tokens));
}

TokenBucket::Level TokenBucket::level(Clock::time_point now)
{
    refill(now);
    return Level { m_budget, m_burst };
}

void TokenBucket::set_level(Level const& level, Clock::time_point now)
{
    auto const size = static_cast<std::int64_t>(m_config.size);
    // A negative level (the debt a request larger than the bucket left under
    // the rule before, in a snapshot taken then) is bounded by -size here, so
    // a corrupt level cannot stall a device for long; a larger debt is
    // forgiven. A level above the size (tokens a waiting request had gathered)
    // comes back as a full bucket: the request waits again for the rest.
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
