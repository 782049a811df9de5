// Test helpers for the virtio tests: guest memory backed by a plain aligned buffer,
// and a minimal split-virtqueue driver that lays out rings, writes descriptors and
// publishes chains the way a guest driver does, so device code is exercised
// without KVM (STYLE.md point 14).
#pragma once

#include "devices/guest_memory.h"
#include "devices/virtio/queue.h"
#include "devices/virtio/spec.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace strata::test {

// Guest RAM of `size` bytes at guest address `base`, page-aligned on the host.
class TestMemory {
public:
    explicit TestMemory(std::uint64_t size, std::uint64_t base = 0)
        : m_buf(static_cast<std::byte*>(std::aligned_alloc(4096, size)))
        , m_mem({ GuestMemory::Region { base, size, m_buf.get() } })
    {
        std::memset(m_buf.get(), 0, size);
    }
    GuestMemory const& mem() const { return m_mem; }
    // Dirty tracking from now on into `bits` (one bit per page), as a VMM starts
    // it (or as a harvest leaves it: every bit clear) while devices run.
    void track_dirty(std::atomic<std::uint64_t>* bits) { m_mem.start_dirty_tracking(0, bits); }
    std::byte* host(std::uint64_t gpa) const { return m_mem.slice(gpa, 0).value().data(); }

private:
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, Free> m_buf;
    GuestMemory m_mem;
};

struct Seg {
    std::uint64_t gpa;
    std::uint32_t len;
    bool writable;
};

class TestDriver {
public:
    // Rings for a queue of `size` entries at `rings` (4 KiB aligned); buffers come
    // from a bump allocator starting at `heap`.
    TestDriver(GuestMemory const& mem, std::uint16_t size, std::uint64_t rings, std::uint64_t heap)
        : m_mem(&mem)
        , m_size(size)
        , m_desc(rings)
        , m_avail(rings + virtio::desc_table_bytes(size))
        , m_used((m_avail + virtio::avail_ring_bytes(size) + 4095) & ~4095ULL)
        , m_heap(heap)
    {
    }

    virtio::QueueConfig config() const { return { m_size, true, m_desc, m_avail, m_used }; }
    std::uint16_t size() const { return m_size; }
    std::uint64_t desc_table() const { return m_desc; }

    std::uint64_t alloc(std::uint64_t len, std::uint64_t align = 16)
    {
        m_heap = (m_heap + align - 1) & ~(align - 1);
        std::uint64_t at = m_heap;
        m_heap += len;
        return at;
    }

    void set_desc(std::uint16_t index, std::uint64_t addr, std::uint32_t len, std::uint16_t flags, std::uint16_t next)
    {
        write_desc(m_desc, index, addr, len, flags, next);
    }
    void write_desc(std::uint64_t table, std::uint32_t index, std::uint64_t addr, std::uint32_t len,
        std::uint16_t flags, std::uint16_t next)
    {
        std::uint64_t at = table + 16ULL * index;
        (void)m_mem->write<std::uint64_t>(at, addr);
        (void)m_mem->write<std::uint32_t>(at + 8, len);
        (void)m_mem->write<std::uint16_t>(at + 12, flags);
        (void)m_mem->write<std::uint16_t>(at + 14, next);
    }

    // Writes segs as a chain of ring descriptors starting at the next free index
    // and returns the head (does not publish).
    std::uint16_t build_chain(std::vector<Seg> const& segs)
    {
        std::uint16_t head = m_next_desc;
        for (std::size_t i = 0; i < segs.size(); ++i) {
            std::uint16_t idx = static_cast<std::uint16_t>((head + i) % m_size);
            std::uint16_t next = static_cast<std::uint16_t>((idx + 1) % m_size);
            std::uint16_t flags = static_cast<std::uint16_t>((segs[i].writable ? virtio::DescFlagWrite : 0)
                | (i + 1 < segs.size() ? virtio::DescFlagNext : 0));
            set_desc(idx, segs[i].gpa, segs[i].len, flags, next);
        }
        m_next_desc = static_cast<std::uint16_t>((head + segs.size()) % m_size);
        return head;
    }

    // Writes segs into a fresh indirect table and a ring descriptor pointing at it.
    std::uint16_t build_indirect(std::vector<Seg> const& segs)
    {
        std::uint64_t table = alloc(16 * segs.size(), 16);
        for (std::size_t i = 0; i < segs.size(); ++i) {
            std::uint16_t flags = static_cast<std::uint16_t>((segs[i].writable ? virtio::DescFlagWrite : 0)
                | (i + 1 < segs.size() ? virtio::DescFlagNext : 0));
            write_desc(table, static_cast<std::uint32_t>(i), segs[i].gpa, segs[i].len, flags,
                static_cast<std::uint16_t>(i + 1));
        }
        std::uint16_t head = m_next_desc;
        set_desc(head, table, static_cast<std::uint32_t>(16 * segs.size()), virtio::DescFlagIndirect, 0);
        m_next_desc = static_cast<std::uint16_t>((head + 1) % m_size);
        return head;
    }

    void publish(std::uint16_t head)
    {
        (void)m_mem->write<std::uint16_t>(m_avail + 4 + 2ULL * (m_avail_idx % m_size), head);
        ++m_avail_idx;
        std::atomic_thread_fence(std::memory_order_release);
        (void)m_mem->write<std::uint16_t>(m_avail + 2, m_avail_idx);
    }
    void set_avail_idx(std::uint16_t idx) { (void)m_mem->write<std::uint16_t>(m_avail + 2, idx); }
    void set_avail_flags(std::uint16_t flags) { (void)m_mem->write<std::uint16_t>(m_avail, flags); }
    void set_used_event(std::uint16_t v) { (void)m_mem->write<std::uint16_t>(m_avail + 4 + 2ULL * m_size, v); }
    std::uint16_t avail_event() const { return m_mem->read<std::uint16_t>(m_used + 4 + 8ULL * m_size).value(); }

    std::uint16_t used_idx() const
    {
        std::atomic_thread_fence(std::memory_order_acquire);
        return m_mem->read<std::uint16_t>(m_used + 2).value();
    }
    // The used element at ring position i: {id, len}.
    std::pair<std::uint32_t, std::uint32_t> used_elem(std::uint16_t i) const
    {
        std::uint64_t at = m_used + 4 + 8ULL * (i % m_size);
        return { m_mem->read<std::uint32_t>(at).value(), m_mem->read<std::uint32_t>(at + 4).value() };
    }

private:
    GuestMemory const* m_mem;
    std::uint16_t m_size;
    std::uint64_t m_desc;
    std::uint64_t m_avail;
    std::uint64_t m_used;
    std::uint64_t m_heap;
    std::uint16_t m_next_desc { 0 };
    std::uint16_t m_avail_idx { 0 };
};

} // namespace strata::test
