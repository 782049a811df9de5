// BlkEngine: executes parsed virtio-blk requests on a BlockBackend (virtio 1.2
// §5.2.6) for one activation of the device: takes chains from the available rings,
// parses them (request.h), submits them, and publishes completions on the used
// rings (STYLE.md points 9-11).
//
// - Each accepted request occupies a slot, indexed by the tag it carries to the
//   backend, from submission until its last completion; a request that maps to
//   several backend operations (multi-range discard) completes when all have.
// - At most min(backend queue depth, total queue size) requests and backend queue
//   depth operations are in flight. When a slot or the backend is full (Busy), the
//   chain stays on the available ring (peeked, not popped) and the engine retries
//   after the next completion: backpressure, not failure.
// - A rejected or failed request completes with S_IOERR/S_UNSUPP, goes back to the
//   used ring, is counted and logged (rate-limited); the VMM carries on. A corrupt
//   ring (avail index out of range) stops that queue and sets DEVICE_NEEDS_RESET.
// - Data buffers are the guest's own pages, handed to the backend as iovecs.
// - One kick per batch of submissions.
// - Rate limiting (base/rate_limiter.h): a read or write takes its bytes and one
//   operation, any other request one operation, before it is submitted. When the
//   tokens are not there the chain stays on the available ring, the engine arms
//   the timer it was given and takes chains again when it fires (on_timer): a
//   throttled request waits, it never fails.
//
// Threading: an engine is driven by one thread (the device's I/O thread). The
// counters are atomics that any thread may read.
#pragma once

#include "base/rate_limiter.h"
#include "devices/virtio/blk/config.h"
#include "devices/virtio/blk/request.h"
#include "devices/virtio/device.h"
#include "devices/virtio/queue.h"
#include "devices/virtio/rate_limited_log.h"
#include "imaging/block_backend.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace strata::virtio::blk {

// Per-disk counters, for GET /metrics.
struct BlkCounters {
    std::atomic<std::uint64_t> requests { 0 }; // completed, successful or not
    std::atomic<std::uint64_t> read_requests { 0 };
    std::atomic<std::uint64_t> write_requests { 0 };
    std::atomic<std::uint64_t> flush_requests { 0 };
    std::atomic<std::uint64_t> discard_requests { 0 };
    std::atomic<std::uint64_t> write_zeroes_requests { 0 };
    std::atomic<std::uint64_t> bytes_read { 0 };
    std::atomic<std::uint64_t> bytes_written { 0 };
    std::atomic<std::uint64_t> errors { 0 };   // completed with a non-OK status
    std::atomic<std::uint64_t> rejected { 0 }; // of which refused by the parser
    std::atomic<std::uint64_t> backpressure { 0 }; // times a chain waited for room
    std::atomic<std::uint64_t> throttled { 0 }; // times a chain waited for the rate limit
};

class BlkEngine {
public:
    // queues: one entry per device queue; nullopt for queues the driver left unready.
    BlkEngine(BlockBackend& backend, GuestMemory const& mem, BlkLimits const& limits, std::string const& id,
        std::vector<std::optional<Virtqueue>> queues, VirtioSignals& signals, BlkCounters& counters,
        RateLimitedLog& log, RateLimiter& limiter);

    // The timer the engine arms when the rate limit holds a request back; the I/O
    // thread owns it, polls it and calls on_timer when it fires.
    void set_timer(RateLimitTimer* timer) { m_timer = timer; }
    void on_timer();
    bool throttled() const { return m_throttled; }

    // Takes requests from one queue / every queue until empty or backpressured.
    void process_queue(std::uint16_t queue);
    void process_all();
    // Collects the backend's completions (never blocks), publishes them, raises
    // interrupts, and retries chains left waiting for room.
    void reap();
    // While paused, no new chains are taken (completions still are published).
    void set_paused(bool paused) { m_paused = paused; }
    unsigned in_flight() const { return m_in_flight; }
    // Waits for every in-flight request; publishes them when publish is true,
    // otherwise (device reset) drops them without touching the rings.
    void drain(bool publish);

private:
    struct Slot {
        BlkRequest request;
        std::uint16_t queue { 0 };
        std::uint16_t head { 0 };
        unsigned pending { 0 };
        std::uint8_t status { status_code::Ok };
    };
    enum class Start { Taken, Backpressure, Throttled };
    // Taken: the chain was started or completed; otherwise it stays on the ring.
    Start start(std::uint16_t queue, std::uint16_t head);
    void complete(std::uint16_t queue, std::uint16_t head, BlkRequest const& request, std::uint8_t status,
        std::uint64_t id_written = 0);
    void on_completion(BlockCompletion&& completion);
    void fail_queue(std::uint16_t queue, std::string const& why);
    void flush_kick();
    void raise_interrupts();

    BlockBackend& m_backend;
    GuestMemory const& m_mem;
    BlkLimits m_limits;
    std::string m_id;
    std::vector<std::optional<Virtqueue>> m_queues;
    std::vector<bool> m_published; // per queue: used entries since the last interrupt check
    VirtioSignals& m_signals;
    BlkCounters& m_counters;
    RateLimitedLog& m_log;
    RateLimiter& m_limiter;
    RateLimitTimer* m_timer { nullptr };
    bool m_throttled { false }; // a chain waits for the rate limit's tokens

    std::vector<Slot> m_slots;
    std::vector<unsigned> m_free;
    unsigned m_in_flight { 0 };
    unsigned m_ops_in_flight { 0 };
    unsigned m_depth { 0 };
    unsigned m_unkicked { 0 };
    bool m_blocked { false }; // some chain waits for room
    bool m_paused { false };
    bool m_publish { true };
    BlkRequest m_scratch; // for requests that complete without a slot
};

} // namespace strata::virtio::blk
