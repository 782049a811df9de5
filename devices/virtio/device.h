// VirtioDevice: what a virtio device type (blk, later net) offers to the
// transports (virtio-mmio, virtio-pci), and VirtioSignals: what a transport offers
// back to the device. A transport owns the register state the driver programs
// (features, status, queue addresses) and hands it to the device at DRIVER_OK as a
// VirtioActivation; the device owns everything that happens on the queues.
//
// Notifications: the transport owns one eventfd per queue (see QueueEventfds). The
// VMM binds each to the transport's notify address with KVM_IOEVENTFD; a notify
// write that reaches the transport's bus handler instead is forwarded to the same
// eventfd. A device therefore only ever waits on eventfds.
//
// Threading: activate() and reset() are called by a transport from a vCPU thread
// with the transport's lock held; read_config()/write_config() likewise. The
// VirtioSignals methods are called from the device's own threads and never take
// the transport's lock (a transport calls reset() with its lock held, and reset()
// waits for those threads).
#pragma once

#include "base/fd.h"
#include "base/result.h"
#include "devices/guest_memory.h"
#include "devices/virtio/queue.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace strata::virtio {

class VirtioSignals {
public:
    virtual ~VirtioSignals() = default;
    // The device put buffers on queue's used ring and the driver wants to know.
    virtual void signal_used(std::uint16_t queue) = 0;
    // The device configuration changed (config generation is bumped).
    virtual void signal_config_change() = 0;
    // The device hit an error it cannot continue from (e.g. a corrupt ring): sets
    // DEVICE_NEEDS_RESET and interrupts the driver with a config change.
    virtual void set_needs_reset() = 0;
};

// One eventfd per queue, created with the transport and kept across resets so the
// VMM registers them once.
class QueueEventfds {
public:
    [[nodiscard]] static Result<QueueEventfds> create(std::uint16_t count);
    int fd(std::uint16_t queue) const { return m_fds[queue].get(); }
    std::uint16_t count() const { return static_cast<std::uint16_t>(m_fds.size()); }
    // Signals queue's eventfd, as KVM would on a guest write to the notify address.
    void notify(std::uint16_t queue) const;

private:
    std::vector<Fd> m_fds;
};

// Where the driver's notifications for one queue land, so the VMM can bind the
// queue's eventfd with KVM_IOEVENTFD (an MMIO address: virtio-mmio registers and
// virtio-pci BARs are both MMIO). With datamatch, only writes of that value count.
struct QueueNotifier {
    std::uint64_t address { 0 };
    std::uint32_t length { 0 }; // bytes the driver writes
    std::optional<std::uint64_t> datamatch;
    std::uint16_t queue { 0 };
    int eventfd { -1 };
};

struct VirtioActivation {
    GuestMemory const* mem { nullptr };
    std::uint64_t features { 0 };     // negotiated with the driver
    std::vector<QueueConfig> queues;  // one per device queue; ready ones are in use
    QueueEventfds const* eventfds { nullptr };
    VirtioSignals* signals { nullptr };
    // Empty for a driver's DRIVER_OK; after a snapshot restore, one entry per
    // queue: the ring position the queue resumes at (TransportSnapshot).
    std::vector<std::uint16_t> start_indices;
};

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;

    virtual std::uint32_t device_id() const = 0;
    // Includes VIRTIO_F_VERSION_1 and the ring features the device supports.
    virtual std::uint64_t features() const = 0;
    virtual std::uint16_t num_queues() const = 0;
    virtual std::uint16_t max_queue_size() const = 0;

    // Device configuration space (device-specific layout). Reads beyond it return
    // zeros; writes to read-only fields are ignored.
    virtual void read_config(std::uint64_t offset, std::span<std::byte> data) const = 0;
    virtual void write_config(std::uint64_t offset, std::span<std::byte const> data) = 0;

    // The driver set DRIVER_OK. An error makes the transport set
    // DEVICE_NEEDS_RESET; the device must then be inactive.
    [[nodiscard]] virtual Status activate(VirtioActivation activation) = 0;
    // The driver reset the device (or the VMM tears it down): returns once the
    // device no longer touches guest memory or calls VirtioSignals. Idempotent.
    virtual void reset() = 0;
};

} // namespace strata::virtio
