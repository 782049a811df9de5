// VirtioNet: a virtio-net device (virtio 1.2 §5.1) with one queue pair over a
// NetBackend (a tap, tap.h). It owns the configuration space (MAC, link status),
// the feature set, the counters and the I/O thread; chain.h parses the chains.
//
// Data path, on the device's I/O thread only:
// - transmit: each transmitq chain is parsed whole, its header copied out and
//   checked against the negotiated features (chain.h), and the packet handed to
//   the backend as that header copy plus the guest's own buffers (no copy of the
//   payload). When the backend cannot take a packet now, the chain stays on the
//   ring and the thread waits for the backend to become writable.
// - receive: a packet is read from the backend only once the guest has posted
//   receive buffers, and lands in those buffers alone: with MRG_RXBUF across as
//   many chains as it needs (num_buffers says how many), without it in one
//   chain, which must hold it (a packet too large for the chain is dropped and
//   counted). When the chains taken hold the largest packet (64 KiB and its
//   headers), the backend writes straight into them (one copy, counted in
//   rx_direct); otherwise the packet goes through the device's own buffer and
//   is copied into the chains. Either way the device publishes only the chains
//   the packet filled and writes num_buffers itself after the read. While the guest
//   posts no buffers, packets stay queued in the host kernel (which drops on
//   overflow, as a NIC does) and the thread stops watching the backend.
// - fairness: at most NetOptions::budget packets each way per turn of the loop,
//   so a guest flooding transmitq delays, but never starves, receive, reset and
//   the control events; the loop then goes round again without sleeping.
// - polling (off unless NetOptions::poll_us): for poll_us after a turn that
//   moved a packet, the loop looks at its events without sleeping (epoll_wait
//   with no timeout) and at the transmit ring, whose notifications the guest
//   is meanwhile not asked for; before it sleeps it asks for them again.
// The queues are hostile input (STYLE.md 7, 9): a refused chain goes back to the
// used ring with length 0, is counted in `errors` and logged (rate-limited); a
// corrupt ring stops that queue and sets DEVICE_NEEDS_RESET. The VMM carries on.
//
// Rate limits (NetOptions::rx_limiter, tx_limiter): a packet waits, never fails,
// until its direction's buckets hold its bytes and one operation: a transmit
// chain stays on the ring, a received packet in the device's buffer or, read
// in place, in its chains unpublished (and the backend unread), while a timerfd
// runs out; the limiters may be changed at any
// time (RateLimiter::update, PATCH /network-interfaces).
//
// Metadata service (NetOptions::mmds): each transmit chain's first bytes are
// classified (mmds_stack.h); a frame for the service's address is copied out of
// guest memory whole and handed to the activation's MmdsStack instead of the
// backend, and the frames the stack answers with are delivered like received
// packets, before the next one is read from the backend. The stack's
// connections end with the activation (a reset).
//
// Offloads: when its I/O thread starts, the device tells the backend which
// offloads the guest accepted for received packets (GUEST_CSUM, GUEST_TSO4/6 ->
// TUNSETOFFLOAD); as the thread ends (reset) it withdraws them. Only the I/O
// thread touches the backend.
//
// Running-state snapshots: pause() parks the I/O thread between two turns of
// its loop (nothing taken from or published to the rings, no guest memory
// touched, the backend unread) and returns once it is parked; resume() lets it
// go on. A receive packet already in the device's buffer stays there; receive
// chains taken for it but not yet published are behind the used ring's index,
// so a device restored at that index takes them again (TransportSnapshot).
// save_state()/restore_state() carry the one thing a restored device must keep
// beyond its transport: the MAC the guest's driver uses, which it read from
// the config space when it probed the device (a running driver never reads it
// again). A clone of the snapshot that is to have a MAC of its own then gets
// it with set_mac(): the config space presents it from then on, and a driver
// that negotiated STATUS is sent a configuration change, but the driver goes
// on using the MAC it read until the guest moves its interface (strata's
// guest agent does, asked by the VMM, which then says so with
// guest_moved_to()). Until then a snapshot saves the MAC the driver read, not
// the one presented, so a clone of the clone knows what the guest has. A
// driver that activates the device after a reset probed it again and read
// the MAC presented then. The device never filters frames by MAC, so both
// work meanwhile. The counters are the VMM's, not the guest's: a restored
// device starts them at zero, as a new VMM's metrics do.
//
// Threading: VirtioDevice methods come from the transport (vCPU threads, under
// the transport's lock); metrics() from any thread. The backend must outlive the
// device.
#pragma once

#include "base/fd.h"
#include "devices/virtio/device.h"
#include "devices/virtio/net/backend.h"
#include "devices/virtio/net/config.h"
#include "devices/virtio/rate_limited_log.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace strata::virtio::net {

struct NetMetrics {
    std::uint64_t rx_packets, rx_bytes;  // delivered to the guest (bytes without the header)
    std::uint64_t tx_packets, tx_bytes;  // sent by the guest and taken by the backend
    std::uint64_t rx_dropped;            // packets larger than the receive chain (no MRG_RXBUF)
    std::uint64_t tx_dropped;            // packets the backend refused
    std::uint64_t errors;                // chains refused (hostile or malformed) and queues stopped
    std::uint64_t tx_backpressure;       // times the backend could not take a packet at once
    std::uint64_t rx_throttled, tx_throttled; // times a rate limiter held a packet back
    std::uint64_t mmds_rx_frames;             // frames the guest sent the metadata service
    std::uint64_t mmds_tx_frames;             // frames the metadata service queued for the guest
    std::uint64_t mmds_dropped;               // of those, taken but not served, or not queued
    std::uint64_t rx_direct;                  // of rx_packets, read straight into the guest's buffers
};

class VirtioNet final : public VirtioDevice {
public:
    [[nodiscard]] static Result<std::unique_ptr<VirtioNet>> create(NetBackend& backend, NetOptions options);
    ~VirtioNet() override;

    std::uint32_t device_id() const override { return DeviceId; }
    std::uint64_t features() const override { return m_features; }
    std::uint16_t num_queues() const override { return QueueCount; }
    std::uint16_t max_queue_size() const override { return m_options.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::byte> data) const override;
    void write_config(std::uint64_t offset, std::span<std::byte const> data) override;
    [[nodiscard]] Status activate(VirtioActivation activation) override;
    void reset() override;

    bool active() const;
    NetMetrics metrics() const;

    void pause();
    void resume();
    struct Snapshot {
        MacAddress mac {}; // the MAC the guest's driver uses
    };
    Snapshot save_state() const;
    // Only before the device is activated (the transport's restore activates it).
    [[nodiscard]] Status restore_state(Snapshot const& snapshot);
    // The MAC the config space presents from now on (see above); thread-safe.
    // A multicast address is refused (Usage) and changes nothing.
    [[nodiscard]] Status set_mac(MacAddress const& mac);
    // The guest's interface now uses `mac` (its agent said it moved it there):
    // what a snapshot saves from now on; thread-safe.
    void guest_moved_to(MacAddress const& mac);
    std::string const& id() const { return m_options.id; }

private:
    VirtioNet(NetBackend& backend, NetOptions options);
    void run(VirtioActivation activation);
    void wake();
    // The I/O thread: parks while a pause is requested (returns when it is
    // withdrawn or the device stops); quiet() marks a thread that has stopped
    // touching the queues for good (a failed activation), so pause() need not wait.
    void park_if_paused();
    void quiet();

    struct Counters {
        std::atomic<std::uint64_t> rx_packets { 0 }, rx_bytes { 0 }, tx_packets { 0 }, tx_bytes { 0 };
        std::atomic<std::uint64_t> rx_dropped { 0 }, tx_dropped { 0 }, errors { 0 }, tx_backpressure { 0 };
        std::atomic<std::uint64_t> rx_throttled { 0 }, tx_throttled { 0 };
        std::atomic<std::uint64_t> mmds_rx_frames { 0 }, mmds_tx_frames { 0 }, mmds_dropped { 0 };
        std::atomic<std::uint64_t> rx_direct { 0 };
    };
    class Engine;

    NetBackend& m_backend;
    NetOptions m_options;
    std::uint64_t m_features { 0 };
    Counters m_counters;
    RateLimitedLog m_log; // at most 10 messages a second
    Fd m_control;         // eventfd: "look at the stop flag"

    mutable std::mutex m_mutex;
    std::thread m_thread;
    bool m_running { false };
    // The MAC the guest's driver uses (m_options.mac is the one presented),
    // and whether the next activation is a restore's, whose driver did not
    // probe the device again (under m_mutex).
    MacAddress m_driver_mac {};
    bool m_restored { false };
    // While running: how to reach the driver and what it negotiated (set_mac's
    // configuration change).
    VirtioSignals* m_signals { nullptr };
    std::uint64_t m_negotiated { 0 };
    std::atomic<bool> m_stop { false };
    std::atomic<bool> m_pause_requested { false };
    bool m_parked { false }; // the I/O thread is parked or quiet (under m_mutex)
    std::condition_variable m_pause_cv;
};

} // namespace strata::virtio::net
