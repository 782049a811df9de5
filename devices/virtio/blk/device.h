// VirtioBlk: a virtio-blk device (virtio 1.2 §5.2) over a BlockBackend, for either
// transport. It owns the device configuration, the feature set, the per-disk
// counters and the I/O thread; the parser (request.h) and the engine (engine.h)
// do the per-request work.
//
// The I/O thread is started when the driver sets DRIVER_OK and stopped (after the
// requests in flight completed) on reset or destruction. It waits with epoll on
// the queue eventfds, the backend's completion_fd and a control eventfd; it alone
// drives the backend while it runs.
//
// Quiesce for machine-image capture (issue 5):
// - pause(): stop taking chains from the available rings, wait until every request
//   in flight has completed and been published, then return. While paused the I/O
//   thread does not touch the backend at all, so the caller may drive it from its
//   own thread (flush_sync, freeze the top layer, swap layers inside a chain). The
//   device holds no per-layer state: only the BlockBackend reference and size.
// - request_pause() + wait_paused(): the same in two steps, so a VMM can ask every
//   disk to drain at once and then wait for all of them (one shorter stall).
// - resume(): take chains again (including those that arrived while paused).
// Pausing an inactive device is allowed and holds: a driver that activates the
// device while it is paused sees no request processed until resume().
//
// Threading: VirtioDevice methods are called by the transport (vCPU threads, under
// the transport's lock); pause/resume/metrics from any VMM thread. The backend
// must outlive the device.
#pragma once

#include "base/fd.h"
#include "devices/virtio/blk/config.h"
#include "devices/virtio/blk/engine.h"
#include "devices/virtio/device.h"
#include "imaging/block_backend.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace strata::virtio::blk {

// A snapshot of BlkCounters.
struct BlkMetrics {
    std::uint64_t requests, read_requests, write_requests, flush_requests, discard_requests, write_zeroes_requests;
    std::uint64_t bytes_read, bytes_written, errors, rejected, backpressure, throttled;
};

class VirtioBlk final : public VirtioDevice {
public:
    [[nodiscard]] static Result<std::unique_ptr<VirtioBlk>> create(BlockBackend& backend, BlkOptions options);
    ~VirtioBlk() override;

    std::uint32_t device_id() const override;
    std::uint64_t features() const override { return m_features; }
    std::uint16_t num_queues() const override { return m_options.num_queues; }
    std::uint16_t max_queue_size() const override { return m_options.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::byte> data) const override;
    void write_config(std::uint64_t offset, std::span<std::byte const> data) override;
    [[nodiscard]] Status activate(VirtioActivation activation) override;
    void reset() override;

    void pause();
    void request_pause();
    void wait_paused();
    // wait_paused with a deadline: false when the device had not drained by then
    // (its pause stays requested; resume() withdraws it).
    bool wait_paused_until(std::chrono::steady_clock::time_point deadline);
    void resume();
    bool active() const;

    BlkMetrics metrics() const;
    // Replaces the rate limit at once, also while requests wait on the old one
    // (PATCH /drives): the buckets start full.
    void set_rate_limit(RateLimiterConfig const& config);
    RateLimiterConfig rate_limit() const { return m_limiter->config(); }
    std::string const& id() const { return m_options.id; }
    bool read_only() const { return m_options.read_only; }

private:
    VirtioBlk(BlockBackend& backend, BlkOptions options);
    void run(BlkEngine& engine, VirtioActivation activation);
    void wake();

    BlockBackend& m_backend;
    BlkOptions m_options;
    std::uint64_t m_features { 0 };
    ConfigSpace m_config {};
    BlkCounters m_counters;
    RateLimitedLog m_log;
    std::shared_ptr<RateLimiter> m_limiter;
    Fd m_control; // eventfd: "look at the control state"

    mutable std::mutex m_mutex;
    std::condition_variable m_cv;
    std::thread m_thread;
    bool m_running { false };
    bool m_stop { false };
    bool m_pause_requested { false };
    bool m_paused { false }; // the I/O thread acknowledged the pause
};

} // namespace strata::virtio::blk
