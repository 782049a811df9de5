// Token buckets and rate limiters, shaped as Firecracker's: a limiter has a
// bandwidth bucket (tokens are bytes) and an operations bucket (tokens are
// requests); each bucket has a `size` (the tokens it holds when full, also its
// steady burst), a `refill_time` in milliseconds (the time to refill from empty
// to full, so the rate is size / refill_time) and a `one_time_burst` (extra
// tokens spent first and never refilled). A size of 0 means unlimited. Devices
// (virtio-blk, virtio-net) take tokens before they start a request; when the
// tokens are not there the request waits (RateLimitTimer, a timerfd), it never
// fails. Several devices may share one RateLimiter (a rate limit group, as Cloud
// Hypervisor has); each keeps its own timer.
//
// A request larger than a bucket's size waits for its whole cost, as
// Firecracker charges such a request in full: while it waits, the bucket
// fills beyond its size up to that cost (and up to one size more, the time a
// device came late to its timer, which the next request then finds), so from
// a full bucket it waits for the tokens it lacks. Over any span what passes
// stays within the larger of the bucket and the request plus size per
// refill_time, and a late device keeps the long-run rate.
// Threading: RateLimiter is safe from any thread (one mutex); TokenBucket and
// RateLimitTimer belong to one thread.
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <mutex>

namespace strata {

struct TokenBucketConfig {
    std::uint64_t size { 0 }; // 0: unlimited
    std::uint64_t one_time_burst { 0 };
    std::uint64_t refill_time_ms { 0 };
    bool operator==(TokenBucketConfig const&) const = default;
};

struct RateLimiterConfig {
    TokenBucketConfig bandwidth; // bytes
    TokenBucketConfig ops;       // requests
    bool operator==(RateLimiterConfig const&) const = default;
    bool unlimited() const { return bandwidth.size == 0 && ops.size == 0; }
};

// A bucket's configuration must have a refill_time when it has a size.
[[nodiscard]] Status check_rate_limiter(RateLimiterConfig const& config);

// A rate limit group's name (disks of a group share one limiter): 1-20 of
// A-Z a-z 0-9 - _ . as disk ids, neither "." nor "..".
[[nodiscard]] bool valid_rate_limit_group(std::string_view group);
// The same as a Usage error naming the group.
[[nodiscard]] Status check_rate_limit_group(std::string const& group);

class TokenBucket {
public:
    using Clock = std::chrono::steady_clock;

    TokenBucket() = default;
    TokenBucket(TokenBucketConfig const& config, Clock::time_point now);

    bool unlimited() const { return m_config.size == 0; }
    // 0 when `tokens` can be taken now; otherwise the nanoseconds until they can.
    std::uint64_t wait_for(std::uint64_t tokens, Clock::time_point now);
    // Takes tokens (after wait_for said 0).
    void take(std::uint64_t tokens);
    // Gives back tokens taken for a request that did not start after all.
    void give_back(std::uint64_t tokens);
    TokenBucketConfig const& config() const { return m_config; }
    // The tokens it holds (budget, refilled to `now`; may be negative) and the
    // one-time burst left, for running-state snapshots; set_level puts them back
    // (clamped to what the configuration allows), refilling from `now` on.
    struct Level {
        std::int64_t budget { 0 };
        std::uint64_t burst { 0 };
    };
    Level level(Clock::time_point now);
    void set_level(Level const& level, Clock::time_point now);

private:
    void refill(Clock::time_point now);
    // What the budget may refill to: the size, or while a request larger than
    // it waits (m_waiting), that request's cost plus the size.
    std::int64_t cap() const;
    // Drops a waiting request's raised cap once the bucket has reached it.
    void forget_waiting();

    TokenBucketConfig m_config;
    std::int64_t m_budget { 0 }; // negative only from a restored level (an older rule's debt)
    std::uint64_t m_burst { 0 };
    std::uint64_t m_waiting { 0 }; // tokens of a request larger than size that was told to wait
    Clock::time_point m_last {};
};

class RateLimiter {
public:
    explicit RateLimiter(RateLimiterConfig const& config);

    // 0 when a request of `bytes` (and one operation) may start now, its tokens
    // taken; otherwise nothing is taken and the result is the nanoseconds to wait.
    std::uint64_t try_consume(std::uint64_t bytes, std::uint64_t ops = 1);
    void give_back(std::uint64_t bytes, std::uint64_t ops = 1);
    // Replaces the buckets (PATCH): they start full, as new ones do.
    void update(RateLimiterConfig const& config);
    RateLimiterConfig config() const;
    // Running-state snapshots: the configuration and both buckets' levels. A
    // restore with the same configuration continues from the saved levels (a
    // guest that had spent its burst does not get it again by being restored);
    // with another configuration the buckets keep starting full.
    struct State {
        RateLimiterConfig config;
        TokenBucket::Level bandwidth, ops;
    };
    State state();
    void restore_state(State const& state);

private:
    std::atomic<bool> m_unlimited { true }; // read without the lock on every request
    mutable std::mutex m_lock;
    RateLimiterConfig m_config;
    TokenBucket m_bandwidth;
    TokenBucket m_ops;
};

// A one-shot timerfd to wait out a throttled request (CLOCK_MONOTONIC).
class RateLimitTimer {
public:
    [[nodiscard]] static Result<RateLimitTimer> create();
    int fd() const { return m_fd.get(); }
    // Fires once after `ns` (at least 1 ns); re-arming replaces the earlier time.
    void arm(std::uint64_t ns);
    // Reads the expiry (after the fd polled readable); true when it fired.
    bool consume();
    bool armed() const { return m_armed; }

private:
    explicit RateLimitTimer(Fd fd)
        : m_fd(std::move(fd))
    {
    }
    Fd m_fd;
    bool m_armed { false };
};

} // namespace strata
