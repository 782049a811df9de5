#include "devices/virtio/blk/engine.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <poll.h>

namespace strata::virtio::blk {

BlkEngine::BlkEngine(BlockBackend& backend, GuestMemory const& mem, BlkLimits const& limits, std::string const& id,
    std::vector<std::optional<Virtqueue>> queues, VirtioSignals& signals, BlkCounters& counters, RateLimitedLog& log,
    RateLimiter& limiter)
    : m_backend(backend)
    , m_mem(mem)
    , m_limits(limits)
    , m_id(id)
    , m_queues(std::move(queues))
    , m_published(m_queues.size(), false)
    , m_signals(signals)
    , m_counters(counters)
    , m_log(log)
    , m_limiter(limiter)
{
    unsigned total = 0;
    for (auto const& q : m_queues)
        total += q ? q->size() : 0;
    m_depth = std::max(1u, backend.queue_depth());
    unsigned const slots = std::max(1u, std::min(m_depth, total));
    m_slots.resize(slots);
    for (unsigned i = slots; i-- > 0;)
        m_free.push_back(i);
}

void BlkEngine::fail_queue(std::uint16_t queue, std::string const& why)
{
    m_log.warn("queue " + std::to_string(queue) + " stopped: " + why);
    m_queues[queue].reset();
    m_signals.set_needs_reset();
}

void BlkEngine::process_all()
{
    for (std::uint16_t q = 0; q < m_queues.size(); ++q)
        process_queue(q);
}

void BlkEngine::process_queue(std::uint16_t queue)
{
    if (queue >= m_queues.size())
        return;
    while (!m_paused && m_queues[queue]) {
        Virtqueue& vq = *m_queues[queue];
        auto head = vq.peek();
        if (!head) {
            fail_queue(queue, head.error().message);
            break;
        }
        if (head.value()) {
            auto const started = start(queue, *head.value());
            if (started == Start::Backpressure) {
                m_blocked = true;
                ++m_counters.backpressure;
                break;
            }
            if (started == Start::Throttled) {
                ++m_counters.throttled;
                break;
            }
            vq.pop();
            continue;
        }
        // Empty: ask for a notification, then look once more (see enable_notification).
        auto more = vq.enable_notification();
        if (!more) {
            fail_queue(queue, more.error().message);
            break;
        }
        if (!more.value())
            break;
    }
    flush_kick();
    raise_interrupts();
}

BlkEngine::Start BlkEngine::start(std::uint16_t queue, std::uint16_t head)
{
    if (m_free.empty())
        return Start::Backpressure;
    unsigned const index = m_free.back();
    Slot& slot = m_slots[index];
    DescriptorChain chain = m_queues[queue]->chain(head);
    BlkRequest::parse_into(chain, m_mem, m_limits, slot.request);
    BlkRequest const& r = slot.request;
    if (r.rejected()) {
        ++m_counters.rejected;
        m_log.warn(std::string("bad request at head ") + std::to_string(head) + ": " + r.error);
        complete(queue, head, r, r.status);
        return Start::Taken;
    }

    std::vector<BlockRequest> ops;
    switch (r.type) {
    case request_type::In:
    case request_type::Out:
        if (r.data_len == 0) {
            complete(queue, head, r, status_code::Ok);
            return Start::Taken;
        }
        ops.push_back(BlockRequest { r.type == request_type::In ? BlockOp::Read : BlockOp::Write, r.sector * SectorSize,
            r.data_len, r.data, index });
        break;
    case request_type::Flush:
        ops.push_back(BlockRequest { BlockOp::Flush, 0, 0, {}, index });
        break;
    case request_type::GetId: {
        char id[IdBytes] = {};
        std::memcpy(id, m_id.data(), std::min(m_id.size(), IdBytes));
        std::uint64_t done = 0;
        for (auto const& v : r.data) {
            // SAFETY: iov_base came from GuestMemory::slice for exactly iov_len bytes.
            std::memcpy(v.iov_base, id + done, v.iov_len);
            done += v.iov_len;
        }
        complete(queue, head, r, status_code::Ok, done);
        return Start::Taken;
    }
    default: { // Discard, WriteZeroes: one backend operation per range.
        BlockOp const op = r.type == request_type::Discard ? BlockOp::Discard : BlockOp::WriteZeroes;
        for (auto const& z : r.ranges)
            ops.push_back(BlockRequest { op, z.offset, z.length, {}, index });
        break;
    }
    }

    if (ops.size() > m_depth) {
        // More operations than the backend ever holds at once: waiting for room
        // would wait for ever (with nothing in flight nothing retries it). The
        // device advertises no more ranges than this, so only a driver that
        // ignored the limit gets here.
        m_log.warn("a request of " + std::to_string(ops.size()) + " operations, more than the backend's queue depth " + std::to_string(m_depth));
        complete(queue, head, r, status_code::IoErr);
        return Start::Taken;
    }
    if (m_ops_in_flight + ops.size() > m_depth)
        return Start::Backpressure;
    std::uint64_t const bytes = r.type == request_type::In || r.type == request_type::Out ? r.data_len : 0;
    if (m_throttled)
        return Start::Throttled; // the timer is armed; chains keep their order
    if (auto wait = m_limiter.try_consume(bytes); wait != 0) {
        m_throttled = true;
        if (m_timer)
            m_timer->arm(wait);
        return Start::Throttled;
    }
    unsigned submitted = 0;
    std::uint8_t status = status_code::Ok;
    for (auto const& op : ops) {
        auto s = m_backend.submit(op);
        if (s) {
            ++submitted;
            continue;
        }
        if (s.error().kind == ErrorKind::Busy && submitted == 0) {
            m_limiter.give_back(bytes);
            return Start::Backpressure;
        }
        m_log.warn("submit failed: " + s.error().message);
        status = status_code::IoErr;
        break;
    }
    if (submitted == 0) {
        complete(queue, head, r, status);
        return Start::Taken;
    }
    m_free.pop_back();
    slot.queue = queue;
    slot.head = head;
    slot.pending = submitted;
    slot.status = status;
    ++m_in_flight;
    m_ops_in_flight += submitted;
    m_unkicked += submitted;
    return Start::Taken;
}

void BlkEngine::flush_kick()
{
    if (m_unkicked == 0)
        return;
    m_unkicked = 0;
    auto s = m_backend.kick();
    if (!s)
        m_log.warn("kick failed: " + s.error().message);
}

void BlkEngine::complete(std::uint16_t queue, std::uint16_t head, BlkRequest const& r, std::uint8_t status,
    std::uint64_t id_written)
{
    ++m_counters.requests;
    if (status != status_code::Ok) {
        ++m_counters.errors;
    } else {
        switch (r.type) {
        case request_type::In:
            ++m_counters.read_requests;
            m_counters.bytes_read += r.data_len;
            break;
        case request_type::Out:
            ++m_counters.write_requests;
            m_counters.bytes_written += r.data_len;
            break;
        case request_type::Flush: ++m_counters.flush_requests; break;
        case request_type::Discard: ++m_counters.discard_requests; break;
        case request_type::WriteZeroes: ++m_counters.write_zeroes_requests; break;
        default: break;
        }
    }
    if (!m_publish || !m_queues[queue])
        return;
    std::uint32_t written = 0;
    if (r.status_gpa) {
        // The address was checked by the parser; a failure here would mean guest
        // memory shrank, which it cannot.
        (void)m_mem.write<std::uint8_t>(*r.status_gpa, status);
        written = status == status_code::Ok ? r.used_len_ok(id_written) : 1;
    }
    m_queues[queue]->add_used(head, written);
    m_published[queue] = true;
}

void BlkEngine::on_completion(BlockCompletion&& c)
{
    if (c.tag >= m_slots.size() || m_slots[c.tag].pending == 0) {
        m_log.warn("backend completed unknown tag " + std::to_string(c.tag));
        return;
    }
    auto const index = static_cast<unsigned>(c.tag);
    Slot& slot = m_slots[index];
    if (!c.status) {
        m_log.warn("I/O error: " + c.status.error().message);
        slot.status = status_code::IoErr;
    }
    --m_ops_in_flight;
    if (--slot.pending > 0)
        return;
    --m_in_flight;
    complete(slot.queue, slot.head, slot.request, slot.status);
    m_free.push_back(index);
}

void BlkEngine::raise_interrupts()
{
    for (std::uint16_t q = 0; q < m_queues.size(); ++q) {
        if (!m_published[q] || !m_queues[q])
            continue;
        m_published[q] = false;
        if (m_queues[q]->needs_interrupt())
            m_signals.signal_used(q);
    }
}

void BlkEngine::reap()
{
    m_backend.reap([this](BlockCompletion&& c) { on_completion(std::move(c)); }, false);
    raise_interrupts();
    if (m_blocked && !m_paused) {
        m_blocked = false;
        process_all();
    }
}

void BlkEngine::on_timer()
{
    m_throttled = false;
    if (!m_paused)
        process_all();
}

void BlkEngine::drain(bool publish)
{
    m_publish = publish;
    flush_kick();
    while (m_in_flight > 0) {
        // Wait on the completion eventfd with a timeout, so a missed wake-up costs
        // at most 100 ms rather than a hang.
        pollfd p { m_backend.completion_fd(), POLLIN, 0 };
        ::poll(&p, 1, 100);
        m_backend.reap([this](BlockCompletion&& c) { on_completion(std::move(c)); }, false);
    }
    if (publish)
        raise_interrupts();
    m_publish = true;
}

} // namespace strata::virtio::blk
