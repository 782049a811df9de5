// DescriptorChain: walks one split-virtqueue descriptor chain (virtio 1.2 §2.7.5,
// §2.7.5.3 indirect descriptors), treating every field as hostile (STYLE.md 7).
//
// Checks made while walking:
// - every index (the head, each `next`, each index inside an indirect table) is
//   below the size of the table it indexes;
// - a chain visits at most queue-size descriptors, and an indirect table at most
//   its own entry count, so a NEXT loop ends in an error instead of spinning;
// - an indirect descriptor is accepted only when VIRTIO_F_RING_INDIRECT_DESC was
//   negotiated, must not also carry NEXT, must have a length that is a non-zero
//   multiple of 16 and at most queue-size entries, must lie in guest memory, and
//   must not appear inside an indirect table (no nesting);
// - descriptors are read through GuestMemory only.
// Buffer addresses are NOT checked here: the consumer (e.g. the blk parser) slices
// them through GuestMemory when it uses them.
//
// Threading: a chain is a plain value used by one thread.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"

#include <cstdint>
#include <optional>

namespace strata::virtio {

struct Descriptor {
    std::uint64_t addr { 0 };
    std::uint32_t len { 0 };
    bool writable { false }; // VIRTQ_DESC_F_WRITE: the device writes into it
};

class DescriptorChain {
public:
    // desc_table is the guest address of the queue's descriptor table, whose size
    // (entry count) is queue_size. The head is checked by the first next().
    DescriptorChain(GuestMemory const& mem, std::uint64_t desc_table, std::uint16_t queue_size,
        std::uint16_t head, bool indirect_allowed);

    std::uint16_t head() const { return m_head; }

    // The next descriptor, nullopt once the chain has ended, or an error (and the
    // chain stays failed) when the guest broke one of the rules above.
    [[nodiscard]] Result<std::optional<Descriptor>> next();

private:
    [[nodiscard]] Error fail(std::string message);

    GuestMemory const* m_mem;
    std::uint16_t m_queue_size;
    std::uint16_t m_head;
    bool m_indirect_allowed;

    std::uint64_t m_table;      // the table being walked (the ring's, or an indirect one)
    std::uint32_t m_table_size; // entries in m_table
    std::uint32_t m_next;       // index of the next descriptor in m_table
    std::uint32_t m_ttl;        // descriptors this table may still yield
    bool m_in_indirect { false };
    bool m_done { false };
    bool m_failed { false };
};

} // namespace strata::virtio
