// Virtqueue: the device side of one split virtqueue (virtio 1.2 §2.7): taking
// chains from the available ring, publishing them on the used ring, and the
// notification/interrupt suppression rules with and without
// VIRTIO_F_RING_EVENT_IDX (§2.7.7, §2.7.10).
//
// The rings live in guest memory and the guest may rewrite them at any moment, so:
// - create() checks size (power of 2, at most the device maximum), alignment and
//   that all three ring areas lie in guest memory, then keeps their host slices;
// - avail->idx is loaded once per batch with acquire ordering, and an index that
//   claims more than queue-size new entries fails the queue;
// - every head read from the avail ring is checked by DescriptorChain;
// - used entries are written, then used->idx is stored with release ordering;
// - the event-index checks use a full fence between our store and the guest's word.
//
// Threading: a Virtqueue is driven by one thread (the device's I/O thread).
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"
#include "devices/virtio/descriptor_chain.h"

#include <cstdint>
#include <optional>
#include <span>

namespace strata::virtio {

// What the driver programmed for one queue through the transport.
struct QueueConfig {
    std::uint16_t size { 0 };
    bool ready { false };
    std::uint64_t desc { 0 };   // descriptor table
    std::uint64_t driver { 0 }; // available ring
    std::uint64_t device { 0 }; // used ring
};

class Virtqueue {
public:
    // features are the negotiated ones (RING_INDIRECT_DESC and RING_EVENT_IDX matter).
    [[nodiscard]] static Result<Virtqueue> create(GuestMemory const& mem, QueueConfig const& config,
        std::uint16_t max_size, std::uint64_t features);

    std::uint16_t size() const { return m_size; }

    // The head of the next available chain without consuming it, or nullopt if the
    // ring is empty. An error means the driver corrupted the ring.
    [[nodiscard]] Result<std::optional<std::uint16_t>> peek();
    // The chain starting at head (a value peek() returned).
    DescriptorChain chain(std::uint16_t head) const;
    // Consumes the entry peek() returned.
    void pop();

    // Puts (head, written) on the used ring and publishes it.
    void add_used(std::uint16_t head, std::uint32_t written);

    // Whether the driver wants an interrupt for the entries published since the
    // last call (used_event or VIRTQ_AVAIL_F_NO_INTERRUPT).
    bool needs_interrupt();

    // Asks the driver to notify us of the next available entry (writes
    // avail_event with EVENT_IDX) and returns whether entries arrived meanwhile,
    // in which case the caller must process them rather than wait.
    [[nodiscard]] Result<bool> enable_notification();

    // Places a fresh queue at ring position `index` on both rings, as a queue
    // restored from a snapshot continues (every chain before it taken and
    // published, no interrupt owed).
    void resume_at(std::uint16_t index);

private:
    Virtqueue() = default;
    std::uint16_t load_avail_idx() const;
    std::uint16_t load_avail_flags() const;
    std::uint16_t load_used_event() const;
    void store_avail_event(std::uint16_t value);

    GuestMemory const* m_mem { nullptr };
    std::uint16_t m_size { 0 };
    std::uint64_t m_desc { 0 };
    bool m_indirect { false };
    bool m_event_idx { false };
    std::span<std::byte> m_avail; // flags, idx, ring[size], used_event
    std::span<std::byte> m_used;  // flags, idx, ring[size], avail_event
    std::uint64_t m_used_gpa { 0 }; // marked dirty at every write (GuestMemory::mark_dirty)

    std::uint16_t m_next_avail { 0 };    // next avail ring entry we will take
    std::uint16_t m_avail_idx { 0 };     // the driver's avail->idx as last loaded
    std::uint16_t m_used_idx { 0 };      // our used->idx
    std::uint16_t m_signalled_used { 0 }; // used->idx when needs_interrupt() last ran
};

} // namespace strata::virtio
