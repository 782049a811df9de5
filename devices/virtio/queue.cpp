#include "devices/virtio/queue.h"

#include "devices/virtio/spec.h"

#include <atomic>
#include <bit>
#include <cstring>
#include <sstream>

namespace strata::virtio {

namespace {

constexpr std::size_t RingFlags = 0;
constexpr std::size_t RingIdx = 2;
constexpr std::size_t RingEntries = 4;

// A 16-bit ring word shared with the guest, accessed atomically.
std::atomic_ref<std::uint16_t> ring_word(std::span<std::byte> area, std::size_t offset)
{
    // SAFETY: area is a GuestMemory slice that covers the whole ring (checked in
    // create()), offset is a fixed even offset inside it, and create() checked that
    // the host address of area is at least 4-byte aligned, so the pointer is a
    // suitably aligned uint16_t that stays mapped for the life of the VM. The guest
    // writes the same bytes concurrently; atomic_ref makes our side of each access a
    // single load or store with the ordering the virtio memory model requires.
    auto* p = reinterpret_cast<std::uint16_t*>(area.data() + offset);
    return std::atomic_ref<std::uint16_t>(*p);
}

Error queue_error(std::string const& message) { return make_error(ErrorKind::BadInput, "virtqueue: " + message); }

} // namespace

Result<Virtqueue> Virtqueue::create(GuestMemory const& mem, QueueConfig const& config, std::uint16_t max_size,
    std::uint64_t features)
{
    std::uint16_t const n = config.size;
    if (n == 0 || !std::has_single_bit(n) || n > max_size || n > MaxQueueSize)
        return queue_error("size " + std::to_string(n) + " is not a power of 2 at most " + std::to_string(max_size));
    if (config.desc % DescAlign || config.driver % AvailAlign || config.device % UsedAlign)
        return queue_error("ring addresses are misaligned");
    if (!mem.slice(config.desc, desc_table_bytes(n)))
        return queue_error("descriptor table outside guest memory");
    auto avail = mem.slice(config.driver, avail_ring_bytes(n));
    if (!avail)
        return queue_error("available ring outside guest memory");
    auto used = mem.slice(config.device, used_ring_bytes(n));
    if (!used)
        return queue_error("used ring outside guest memory");
    // atomic_ref needs naturally aligned host addresses; guest RAM is mapped at page
    // granularity so this holds whenever the guest addresses are aligned.
    // SAFETY: the casts only read the pointer values to test their alignment.
    if (reinterpret_cast<std::uintptr_t>(avail.value().data()) % 2 != 0
        || reinterpret_cast<std::uintptr_t>(used.value().data()) % 4 != 0)
        return queue_error("ring host mapping is misaligned");

    Virtqueue q;
    q.m_mem = &mem;
    q.m_size = n;
    q.m_desc = config.desc;
    q.m_indirect = (features & feature::RingIndirectDesc) != 0;
    q.m_event_idx = (features & feature::RingEventIdx) != 0;
    q.m_avail = avail.value();
    q.m_used = used.value();
    q.m_used_gpa = config.device;
    // A queue starts at index 0 on both rings after every reset (§2.7.13.1), whatever
    // stale values the ring memory holds.
    return q;
}

std::uint16_t Virtqueue::load_avail_idx() const { return ring_word(m_avail, RingIdx).load(std::memory_order_acquire); }

std::uint16_t Virtqueue::load_avail_flags() const
{
    return ring_word(m_avail, RingFlags).load(std::memory_order_relaxed);
}

std::uint16_t Virtqueue::load_used_event() const
{
    return ring_word(m_avail, RingEntries + 2ULL * m_size).load(std::memory_order_relaxed);
}

void Virtqueue::store_avail_event(std::uint16_t value)
{
    m_mem->mark_dirty(m_used_gpa, m_used.size());
    ring_word(m_used, RingEntries + 8ULL * m_size).store(value, std::memory_order_relaxed);
}

Result<std::optional<std::uint16_t>> Virtqueue::peek()
{
    if (m_next_avail == m_avail_idx) {
        m_avail_idx = load_avail_idx();
        if (static_cast<std::uint16_t>(m_avail_idx - m_next_avail) > m_size) {
            std::ostringstream msg;
            msg << "avail->idx " << m_avail_idx << " is more than the queue size (" << m_size << ") ahead of "
                << m_next_avail;
            m_avail_idx = m_next_avail;
            return queue_error(msg.str());
        }
        if (m_next_avail == m_avail_idx)
            return std::optional<std::uint16_t>();
    }
    std::uint16_t head = 0;
    std::size_t const slot = m_next_avail % m_size;
    std::memcpy(&head, m_avail.data() + RingEntries + 2 * slot, sizeof head);
    // The head is range-checked by DescriptorChain; here it is only data.
    return std::optional<std::uint16_t>(head);
}

DescriptorChain Virtqueue::chain(std::uint16_t head) const
{
    return DescriptorChain(*m_mem, m_desc, m_size, head, m_indirect);
}

void Virtqueue::pop() { ++m_next_avail; }

void Virtqueue::resume_at(std::uint16_t index)
{
    m_next_avail = index;
    m_avail_idx = index;
    m_used_idx = index;
    m_signalled_used = index;
}

void Virtqueue::add_used(std::uint16_t head, std::uint32_t written)
{
    // The ring is written through the slice kept since create: mark it again.
    m_mem->mark_dirty(m_used_gpa, m_used.size());
    std::size_t const slot = m_used_idx % m_size;
    std::uint32_t const elem[2] = { head, written };
    std::memcpy(m_used.data() + RingEntries + 8 * slot, elem, sizeof elem);
    ++m_used_idx;
    // Release: the element (and the buffers the device wrote) become visible to the
    // driver no later than the new index.
    ring_word(m_used, RingIdx).store(m_used_idx, std::memory_order_release);
}

bool Virtqueue::needs_interrupt()
{
    // Full fence: our used->idx store must be ordered before reading the guest's
    // used_event/flags, or we could miss an interrupt the driver is waiting for.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::uint16_t const old_idx = m_signalled_used;
    std::uint16_t const new_idx = m_used_idx;
    m_signalled_used = new_idx;
    if (old_idx == new_idx)
        return false;
    if (!m_event_idx)
        return (load_avail_flags() & AvailFlagNoInterrupt) == 0;
    // vring_need_event (§2.7.10): interrupt if used_event lies in [old, new).
    std::uint16_t const event = load_used_event();
    return static_cast<std::uint16_t>(new_idx - event - 1) < static_cast<std::uint16_t>(new_idx - old_idx);
}

Result<bool> Virtqueue::enable_notification()
{
    if (m_event_idx)
        store_avail_event(m_next_avail);
    // Full fence: the driver must see avail_event before we look at avail->idx
    // again, or a buffer added in between would be neither seen nor notified.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    m_avail_idx = load_avail_idx();
    if (static_cast<std::uint16_t>(m_avail_idx - m_next_avail) > m_size) {
        m_avail_idx = m_next_avail;
        return queue_error("avail->idx jumped by more than the queue size");
    }
    return m_avail_idx != m_next_avail;
}

} // namespace strata::virtio
