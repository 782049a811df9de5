// TokenBucket and RateLimiter (base/rate_limiter.h) on a clock the test moves:
// the steady rate is size / refill_time, one_time_burst is spent once, a request
// larger than the bucket waits for its whole cost (the bucket fills beyond its size
// for it), and the wait the bucket names is the time the tokens take to come.
#include "base/rate_limiter.h"

#include <doctest/doctest.h>

#include <chrono>

using namespace std::chrono_literals;
using strata::TokenBucket;
using strata::TokenBucketConfig;
using strata::RateLimiter;
using strata::RateLimiterConfig;

namespace {

TokenBucket::Clock::time_point const t0 {};

} // namespace

TEST_CASE("a full bucket gives its size, then tokens at size per refill_time")
{
    TokenBucket b(TokenBucketConfig { 1000, 0, 100 }, t0);
    CHECK(b.wait_for(1000, t0) == 0);
    b.take(1000);
    // Empty: 100 tokens take 10 ms.
    CHECK(b.wait_for(100, t0) == 10'000'000);
    CHECK(b.wait_for(100, t0 + 5ms) == 5'000'000);
    CHECK(b.wait_for(100, t0 + 10ms) == 0);
    b.take(100);
    // Over a simulated second at 1 ms steps, taking whatever is there: 10 000 tokens.
    std::uint64_t taken = 0;
    for (auto t = t0 + 11ms; t <= t0 + 1010ms; t += 1ms) {
        while (b.wait_for(7, t) == 0) {
            b.take(7);
            taken += 7;
        }
    }
    CHECK(taken >= 9993);
    CHECK(taken <= 10000);
}

TEST_CASE("one_time_burst is spent first and never comes back")
{
    TokenBucket b(TokenBucketConfig { 100, 500, 1000 }, t0);
    CHECK(b.wait_for(500, t0) == 0);
    b.take(500);
    CHECK(b.wait_for(100, t0) == 0);
    b.take(100);
    CHECK(b.wait_for(1, t0) > 0);
    // Ten seconds later only the bucket's own size is there.
    CHECK(b.wait_for(100, t0 + 10s) == 0);
    b.take(100);
    CHECK(b.wait_for(1, t0 + 10s) > 0);
}

TEST_CASE("a request larger than the bucket waits for its whole cost, also from a full bucket")
{
    TokenBucket b(TokenBucketConfig { 100, 0, 100 }, t0);
    // 300 tokens from a full bucket of 100: the 200 it lacks take 200 ms.
    CHECK(b.wait_for(300, t0) == 200'000'000);
    CHECK(b.wait_for(300, t0 + 150ms) == 50'000'000);
    CHECK(b.wait_for(300, t0 + 200ms) == 0);
    b.take(300);
    // Nothing is left: the next one waits for all of its 300.
    CHECK(b.wait_for(300, t0 + 200ms) == 300'000'000);
    CHECK(b.wait_for(1, t0 + 200ms) == 1'000'000);
}

// Watched failing with requests larger than the bucket taken once the bucket
// held no debt (the rule before): the first request went at once, 300 tokens
// at t0 where the bucket allows 100, and every later one a bucket's worth ahead.
TEST_CASE("requests larger than the bucket never pass more than the bucket plus the rate since the start")
{
    // 100 tokens per 100 ms from a full bucket of 100; a device on time takes
    // each 300-token request the moment the bucket lets it.
    TokenBucket b(TokenBucketConfig { 100, 0, 100 }, t0);
    auto t = t0;
    std::uint64_t taken = 0;
    while (t < t0 + 3000ms) {
        if (auto const wait = b.wait_for(300, t); wait != 0) {
            t += std::chrono::nanoseconds(wait);
            continue;
        }
        b.take(300);
        taken += 300;
        auto const ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - t0).count();
        CHECK(taken <= 100 + static_cast<std::uint64_t>(ms));
    }
    // And no less: one request per 300 ms after the first at 200 ms.
    CHECK(taken == 10 * 300);
}

// Watched failing once with large requests waiting for a full bucket (as before
// this rule): 65 requests went through in the simulated 22.5 s (one per 350 ms).
TEST_CASE("requests larger than the bucket keep the rate when the device comes back late to take them")
{
    // 100 tokens per 100 ms; requests of 300 tokens, each taken 50 ms after the
    // bucket said it could be: 300 tokens per 300 ms still, not per 350 ms.
    TokenBucket b(TokenBucketConfig { 100, 0, 100 }, t0);
    auto t = t0;
    int taken = 0;
    while (t < t0 + 22500ms) {
        if (auto const wait = b.wait_for(300, t); wait != 0) {
            t += std::chrono::nanoseconds(wait) + 50ms;
            continue;
        }
        b.take(300);
        ++taken;
    }
    // 22.5 s at 1 token per ms is 75 requests: the time each came late stays in
    // the bucket (its cap is the cost plus the size while one waits). Watched
    // failing with the cap at the cost alone: 64.
    CHECK(taken >= 75);
    CHECK(taken <= 76);
}

TEST_CASE("an unlimited bucket never waits, give_back returns tokens up to size")
{
    TokenBucket none(TokenBucketConfig {}, t0);
    CHECK(none.wait_for(1ULL << 40, t0) == 0);
    TokenBucket b(TokenBucketConfig { 100, 0, 100 }, t0);
    b.take(100);
    b.give_back(1000);
    CHECK(b.wait_for(100, t0) == 0);
    b.take(100);
    CHECK(b.wait_for(1, t0) > 0);
}

TEST_CASE("RateLimiter takes both buckets or neither, update starts full, bad configs are refused")
{
    strata::RateLimiter limiter(strata::RateLimiterConfig { { 1 << 20, 0, 1000 }, { 2, 0, 1000 } });
    CHECK(limiter.try_consume(4096) == 0);
    CHECK(limiter.try_consume(4096) == 0);
    // The ops bucket is empty: nothing is taken from the bandwidth bucket either.
    CHECK(limiter.try_consume(4096) > 0);
    limiter.update(strata::RateLimiterConfig {});
    CHECK(limiter.try_consume(1ULL << 40) == 0);
    CHECK_FALSE(strata::check_rate_limiter(strata::RateLimiterConfig { { 100, 0, 0 }, {} }));
    CHECK(strata::check_rate_limiter(strata::RateLimiterConfig { { 100, 0, 1 }, {} }));
}

TEST_CASE("a limiter's state carries its spent tokens to another limiter of the same configuration only")
{
    RateLimiterConfig config;
    config.bandwidth = TokenBucketConfig { 1000, 500, 1000000 }; // refills 1000 bytes in 1000 s: no refill during the test
    RateLimiter a(config);
    CHECK(a.try_consume(500) == 0);  // the one-time burst
    CHECK(a.try_consume(900) == 0);  // 100 bytes left
    auto state = a.state();
    CHECK(state.config == config);
    CHECK(state.bandwidth.burst == 0);
    CHECK(state.bandwidth.budget == 100);

    RateLimiter b(config); // a restored VM's: full, burst unspent
    b.restore_state(state);
    CHECK(b.try_consume(200) != 0); // only 100 left, and no burst
    CHECK(b.try_consume(100) == 0);

    RateLimiterConfig other = config;
    other.bandwidth.size = 2000;
    RateLimiter c(other);
    c.restore_state(state); // another configuration: starts full as it would
    CHECK(c.try_consume(1500) == 0);

    // A corrupt level is clamped to what the configuration allows.
    auto wild = state;
    wild.bandwidth.budget = -(std::int64_t(1) << 60);
    wild.bandwidth.burst = 1u << 30;
    RateLimiter d(config);
    d.restore_state(wild);
    auto back = d.state();
    CHECK(back.bandwidth.budget >= -1000);
    CHECK(back.bandwidth.burst <= 500);
}

// Watched failing with give_back capped at the size: B's returned tokens took
// away what A had gathered past the size, and A waited 140 ms more.
TEST_CASE("give_back never lowers the budget a larger request is waiting on")
{
    TokenBucket b(TokenBucketConfig { 100, 0, 100 }, t0);
    CHECK(b.wait_for(300, t0) == 200'000'000); // A waits; the bucket may now fill past 100
    CHECK(b.wait_for(10, t0 + 150ms) == 0);    // B, another disk of the group
    b.take(10);
    b.give_back(10);                            // B's backend was full
    CHECK(b.wait_for(300, t0 + 210ms) == 0);
}

// Watched failing without forget_waiting: 400 tokens of small requests passed at
// once after the idle time, four times the bucket.
TEST_CASE("a request told to wait that never comes back leaves the bucket at its size")
{
    TokenBucket b(TokenBucketConfig { 100, 0, 100 }, t0);
    CHECK(b.wait_for(300, t0) > 0); // its queue is reset while it waits, say
    std::uint64_t taken = 0;
    auto const t = t0 + 10s;
    while (b.wait_for(10, t) == 0 && taken < 10'000) {
        b.take(10);
        taken += 10;
    }
    CHECK(taken <= 100);
}
