// VirtioConsole: a virtio-console device (virtio 1.2 §5.3) with one port and no
// MULTIPORT, so Linux binds it to /dev/hvc0. Its host side is a byte stream:
// - guest -> host: every byte the guest puts on transmitq0 goes to the Sink given
//   at create(), in order, called on the device's I/O thread;
// - host -> guest: write() appends to a bounded buffer (ConsoleOptions::
//   host_buffer_bytes, 64 KiB by default) that the I/O thread copies into the
//   receive buffers the guest posts on receiveq0. When the buffer is full,
//   write() accepts only what fits and returns that count: the caller sees the
//   refusal (nothing is dropped silently). discard_pending() drops what the guest
//   has not taken yet (a VMM that gave up waiting uses it, so a stale request is
//   never delivered late). The buffer survives a device reset: bytes written
//   before the guest's driver is up arrive once it is.
//
// The queues are hostile input (STYLE.md 7, 9): each chain is parsed whole
// (chain.h) before anything is copied; a refused chain goes back to the used ring
// with length 0, is counted in `errors` and logged (rate-limited), and its data is
// neither delivered nor consumed. A corrupt ring (avail index out of range) stops
// that queue and sets DEVICE_NEEDS_RESET. The VMM carries on in every case.
//
// The I/O thread is started at DRIVER_OK and stopped on reset or destruction. It
// waits with epoll on both queue eventfds and a control eventfd (write() and
// reset() ring it).
// Threading: VirtioDevice methods come from the transport (vCPU threads, under the
// transport's lock); write(), discard_pending(), pending() and metrics() from any
// thread; the Sink runs on the I/O thread and must not call back into reset().
#pragma once

#include "base/fd.h"
#include "devices/virtio/console/config.h"
#include "devices/virtio/device.h"
#include "devices/virtio/rate_limited_log.h"

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace strata::virtio::console {

using Sink = std::function<void(std::span<std::byte const>)>;

struct ConsoleMetrics {
    std::uint64_t bytes_to_guest, bytes_from_guest; // delivered each way
    std::uint64_t receive_chains, transmit_chains;  // chains completed
    std::uint64_t errors;                           // chains refused
    std::uint64_t refused_bytes;                    // host bytes write() could not take (buffer full)
    std::uint64_t discarded_bytes;                  // host bytes dropped by discard_pending()
};

class VirtioConsole final : public VirtioDevice {
public:
    [[nodiscard]] static Result<std::unique_ptr<VirtioConsole>> create(ConsoleOptions options, Sink sink);
    ~VirtioConsole() override;

    std::uint32_t device_id() const override { return DeviceId; }
    std::uint64_t features() const override { return m_features; }
    std::uint16_t num_queues() const override { return QueueCount; }
    std::uint16_t max_queue_size() const override { return m_options.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::byte> data) const override;
    void write_config(std::uint64_t offset, std::span<std::byte const> data) override;
    [[nodiscard]] Status activate(VirtioActivation activation) override;
    void reset() override;

    // Queues bytes for the guest; returns how many fit (all or a prefix).
    std::size_t write(std::span<std::byte const> data);
    // Drops the bytes the guest has not taken yet; returns how many.
    std::size_t discard_pending();
    std::size_t pending() const;
    bool active() const;
    ConsoleMetrics metrics() const;

private:
    VirtioConsole(ConsoleOptions options, Sink sink);
    void run(VirtioActivation activation);
    void wake();

    struct Counters {
        std::atomic<std::uint64_t> bytes_to_guest { 0 }, bytes_from_guest { 0 };
        std::atomic<std::uint64_t> receive_chains { 0 }, transmit_chains { 0 };
        std::atomic<std::uint64_t> errors { 0 }, refused_bytes { 0 }, discarded_bytes { 0 };
    };
    class Engine;

    ConsoleOptions m_options;
    Sink m_sink;
    std::uint64_t m_features { 0 };
    Counters m_counters;
    RateLimitedLog m_log; // at most 10 messages a second
    Fd m_control;              // eventfd: "look at the buffer and the stop flag"

    mutable std::mutex m_buffer_lock;
    std::deque<std::byte> m_buffer; // host -> guest, not yet delivered

    mutable std::mutex m_mutex;
    std::thread m_thread;
    bool m_running { false };
    std::atomic<bool> m_stop { false };
};

} // namespace strata::virtio::console
