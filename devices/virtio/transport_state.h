// TransportState: the part of a virtio transport both virtio-mmio and virtio-pci
// share (virtio 1.2 §2.1 status, §2.2 feature negotiation, §3.1 initialization,
// §2.4 reset): feature words selected 32 bits at a time, the device status state
// machine, per-queue configuration and the queue eventfds. (The interrupt status and the
// config generation live in the transports: device threads update them.)
//
// Rules enforced here, whatever the driver writes:
// - driver features can change only before FEATURES_OK; FEATURES_OK is refused
//   (the bit stays clear, as §3.1.1 asks drivers to check) unless the driver's
//   features are a subset of the device's and include VIRTIO_F_VERSION_1;
// - queues can be programmed only before DRIVER_OK; queue sizes are validated at
//   DRIVER_OK (power of 2, at most the device maximum);
// - status bits are only ever added, except by writing 0 (reset); DRIVER_OK
//   without FEATURES_OK is refused; a failed activation sets DEVICE_NEEDS_RESET;
// - writing 0 resets the device (waiting for its I/O to stop) and the state.
//
// Threading: not thread-safe; the owning transport serializes calls with its lock.
// needs_reset is atomic because the device's threads set it without that lock.
#pragma once

#include "base/result.h"
#include "devices/virtio/device.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace strata::virtio {

// One queue as a running-state snapshot keeps it: what the driver programmed and
// the device's position on its rings. Snapshots are taken with the device's
// queues paused and every chain it took completed, so one index is the whole
// position: the next available entry to take is the next used entry to publish.
// (A device that held chains without completing them — virtio-console's
// receive buffers — takes them again from the available ring after a restore.)
struct QueueSnapshot {
    QueueConfig config;
    std::uint16_t index { 0 };
};

// The transport-independent state of a virtio device's transport.
struct TransportSnapshot {
    std::uint32_t device_features_sel { 0 };
    std::uint32_t driver_features_sel { 0 };
    std::uint64_t driver_features { 0 };
    std::uint8_t status { 0 };
    bool needs_reset { false };
    std::uint16_t queue_sel { 0 };
    std::vector<QueueSnapshot> queues;
    // Kept by the transports themselves (virtio-mmio's InterruptStatus and
    // ConfigGeneration).
    std::uint32_t interrupt_status { 0 };
    std::uint32_t config_generation { 0 };
};

class TransportState {
public:
    [[nodiscard]] static Result<std::unique_ptr<TransportState>> create(VirtioDevice& device, GuestMemory const& mem,
        VirtioSignals& signals);

    VirtioDevice& device() const { return *m_device; }
    QueueEventfds const& eventfds() const { return m_eventfds; }

    void select_device_features(std::uint32_t sel) { m_device_features_sel = sel; }
    std::uint32_t device_features_sel() const { return m_device_features_sel; }
    std::uint32_t device_features_word() const;
    void select_driver_features(std::uint32_t sel) { m_driver_features_sel = sel; }
    std::uint32_t driver_features_sel() const { return m_driver_features_sel; }
    std::uint32_t driver_features_word() const;
    void write_driver_features_word(std::uint32_t value);
    std::uint64_t driver_features() const { return m_driver_features; }

    std::uint8_t status() const;
    // Returns true when the write was a reset (the transport then resets its own
    // registers, such as the interrupt status and MSI-X vectors).
    bool write_status(std::uint8_t value);
    // Resets device and state, as a status write of 0 does.
    void reset();
    void set_needs_reset() { m_needs_reset.store(true, std::memory_order_relaxed); }

    std::uint16_t num_queues() const { return static_cast<std::uint16_t>(m_queues.size()); }
    void select_queue(std::uint16_t index) { m_queue_sel = index; }
    std::uint16_t queue_sel() const { return m_queue_sel; }
    // The selected queue, or nullptr when queue_sel is out of range.
    QueueConfig const* selected_queue() const;
    // The selected queue if the driver may still change it, else nullptr.
    QueueConfig* writable_queue();

    // The state, with each ready queue's position read from its used ring
    // (used->idx). The caller has paused the device's queues.
    [[nodiscard]] Result<TransportSnapshot> save() const;
    // Puts a saved state into a freshly created transport (status 0) and, when
    // the driver had set DRIVER_OK, activates the device with its queues resuming
    // at the saved positions. A snapshot that does not fit this device (queue
    // count, sizes) is BadInput and changes nothing.
    [[nodiscard]] Status restore(TransportSnapshot const& snapshot);

private:
    TransportState(VirtioDevice& device, GuestMemory const& mem, VirtioSignals& signals, QueueEventfds eventfds);
    void activate(std::vector<std::uint16_t> start_indices = {});

    VirtioDevice* m_device;
    GuestMemory const* m_mem;
    VirtioSignals* m_signals;
    QueueEventfds m_eventfds;

    std::uint32_t m_device_features_sel { 0 };
    std::uint32_t m_driver_features_sel { 0 };
    std::uint64_t m_driver_features { 0 };
    std::uint8_t m_status { 0 };
    std::atomic<bool> m_needs_reset { false };
    std::uint16_t m_queue_sel { 0 };
    std::vector<QueueConfig> m_queues;
    bool m_active { false };
};

} // namespace strata::virtio
