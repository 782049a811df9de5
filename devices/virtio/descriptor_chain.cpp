#include "devices/virtio/descriptor_chain.h"

#include "devices/virtio/spec.h"

#include <sstream>

namespace strata::virtio {

namespace {

// The in-memory layout of struct virtq_desc (§2.7.5).
struct RawDescriptor {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
};
static_assert(sizeof(RawDescriptor) == DescSize);

} // namespace

DescriptorChain::DescriptorChain(GuestMemory const& mem, std::uint64_t desc_table, std::uint16_t queue_size,
    std::uint16_t head, bool indirect_allowed)
    : m_mem(&mem)
    , m_queue_size(queue_size)
    , m_head(head)
    , m_indirect_allowed(indirect_allowed)
    , m_table(desc_table)
    , m_table_size(queue_size)
    , m_next(head)
    , m_ttl(queue_size)
{
}

Error DescriptorChain::fail(std::string message)
{
    m_failed = true;
    std::ostringstream out;
    out << "descriptor chain at head " << m_head << ": " << message;
    return make_error(ErrorKind::BadInput, out.str());
}

Result<std::optional<Descriptor>> DescriptorChain::next()
{
    if (m_failed)
        return fail("used after an error");
    // At most two iterations: an indirect descriptor switches tables, then the
    // table's first entry is returned.
    while (!m_done) {
        if (m_ttl == 0)
            return fail(m_in_indirect ? "indirect chain longer than its table (loop?)"
                                      : "chain longer than the queue size (loop?)");
        if (m_next >= m_table_size)
            return fail("descriptor index " + std::to_string(m_next) + " out of range (table of "
                + std::to_string(m_table_size) + ")");
        auto raw = m_mem->read<RawDescriptor>(m_table + DescSize * m_next);
        if (!raw)
            return fail("descriptor table outside guest memory");
        RawDescriptor const d = raw.value();
        --m_ttl;

        if (d.flags & DescFlagIndirect) {
            if (m_in_indirect)
                return fail("nested indirect descriptor");
            if (!m_indirect_allowed)
                return fail("indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC");
            if (d.flags & DescFlagNext)
                return fail("indirect descriptor with NEXT set");
            if (d.len == 0 || d.len % DescSize != 0)
                return fail("indirect table length " + std::to_string(d.len) + " is not a non-zero multiple of 16");
            std::uint32_t const entries = d.len / static_cast<std::uint32_t>(DescSize);
            if (entries > m_queue_size)
                return fail("indirect table longer than the queue size");
            if (!m_mem->slice(d.addr, d.len))
                return fail("indirect table outside guest memory");
            m_table = d.addr;
            m_table_size = entries;
            m_next = 0;
            m_ttl = entries;
            m_in_indirect = true;
            continue;
        }

        if (d.flags & DescFlagNext)
            m_next = d.next;
        else
            m_done = true;
        return std::optional<Descriptor>(Descriptor { d.addr, d.len, (d.flags & DescFlagWrite) != 0 });
    }
    return std::optional<Descriptor>();
}

} // namespace strata::virtio
