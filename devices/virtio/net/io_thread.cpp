// The virtio-net I/O thread: one epoll loop per activation over the two queue
// eventfds, the backend's fd and the control eventfd, and the per-queue work
// (Engine). See device.h for the contract.
#include "base/rate_limiter.h"
#include "devices/virtio/net/chain.h"
#include "devices/virtio/net/device.h"
#include "devices/virtio/net/mmds_stack.h"
#include "devices/virtio/queue.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <numeric>
#include <optional>
#include <poll.h>
#include <sys/epoll.h>
#include <vector>

namespace strata::virtio::net {

namespace {

constexpr std::uint64_t ControlKey = 1ULL << 32;
constexpr std::uint64_t BackendKey = 1ULL << 33;
constexpr std::uint64_t RxTimerKey = 1ULL << 34;
constexpr std::uint64_t TxTimerKey = 1ULL << 35;
// A packet is read straight into the guest's buffers once they can hold the
// largest one; a single read takes at most this many pieces (IOV_MAX).
constexpr std::uint64_t DirectBytes = HeaderSize + MaxFrameBytes;
constexpr std::size_t MaxReadPieces = 1024;

} // namespace

// The queues of one activation and the receive state. Only the I/O thread
// touches it.
class VirtioNet::Engine {
public:
    Engine(VirtioNet& device, VirtioActivation const& activation, std::vector<std::optional<Virtqueue>> queues)
        : m_device(device)
        , m_mem(*activation.mem)
        , m_signals(*activation.signals)
        , m_features(activation.features)
        , m_queues(std::move(queues))
        , m_packet(HeaderSize + MaxFrameBytes)
    {
        if (device.m_options.mmds)
            m_mmds.emplace(device.m_options.mmds, device.m_options.mmds_ipv4);
    }

    // Frames of the metadata service wait for the guest.
    bool mmds_pending() const { return m_mmds && m_mmds->pending(); }

    // Chains taken from either queue so far (the loop polls while this moves).
    std::uint64_t moved() const { return m_moved; }
    // While the loop polls, an empty transmit ring does not ask the guest to
    // notify (EVENT_IDX's avail_event stays behind), so a guest sending a stream
    // does not exit for every packet; the loop looks at the ring each turn
    // instead. Cleared, the next process_transmit() asks again and looks once
    // more, which the loop does before it sleeps.
    bool tx_quiet() const { return m_tx_quiet; }
    void set_tx_quiet(bool quiet) { m_tx_quiet = quiet; }

    // Whether the loop should watch the backend for a packet / for room.
    bool wants_receive() const { return m_queues[ReceiveQueue] && !m_rx_waiting && !m_rx_backend_failed && !m_rx_throttled; }
    bool wants_send() const { return m_queues[TransmitQueue] && m_tx_waiting; }

    // The guest posted receive buffers / the backend has room again.
    void receive_buffers_posted()
    {
        m_rx_waiting = false;
        m_rx_backend_failed = false;
    }
    void backend_writable() { m_tx_waiting = false; }
    // A limiter's wait ran out.
    void rx_timer_fired() { m_rx_throttled = false; }
    void tx_timer_fired() { m_tx_throttled = false; }
    void set_timers(RateLimitTimer* rx, RateLimitTimer* tx)
    {
        m_rx_timer = rx;
        m_tx_timer = tx;
    }

    // Sends up to a budget of packets; true when the budget ran out with more
    // chains possibly waiting (the caller comes back without sleeping).
    bool process_transmit()
    {
        unsigned done = 0;
        bool published = false;
        while (auto* vq = queue(TransmitQueue)) {
            if (m_tx_waiting || m_tx_throttled || done >= m_device.m_options.budget)
                break;
            auto head = vq->peek();
            if (!head) {
                fail_queue(TransmitQueue, head.error().message);
                break;
            }
            if (!head.value()) {
                if (m_tx_quiet)
                    break; // the loop polls the ring; the guest need not notify
                auto more = vq->enable_notification();
                if (!more) {
                    fail_queue(TransmitQueue, more.error().message);
                    break;
                }
                if (!more.value())
                    break;
                continue;
            }
            DescriptorChain walk = vq->chain(*head.value());
            NetChain chain = parse_transmit_chain(walk, m_mem);
            std::string refusal = chain.error;
            NetHeader header {};
            if (refusal.empty()) {
                header = read_header(chain);
                refusal = check_transmit_header(header, m_features);
            }
            if (!refusal.empty()) {
                ++m_device.m_counters.errors;
                m_device.m_log.warn("transmitq chain at head " + std::to_string(chain.head) + " refused: " + refusal);
            } else if (m_mmds && to_mmds(chain, header)) {
                // Taken by the metadata service: nothing reaches the backend.
            } else {
                std::uint64_t const bytes = chain.bytes - HeaderSize;
                if (throttle(m_device.m_options.tx_limiter, m_tx_timer, bytes, m_tx_throttled, m_device.m_counters.tx_throttled))
                    break; // the chain stays on the ring until the timer fires
                auto sent = send(chain, header);
                if (sent && !sent.value()) {
                    // The chain stays on the ring; the loop waits for room.
                    if (auto* limiter = m_device.m_options.tx_limiter)
                        limiter->give_back(bytes);
                    ++m_device.m_counters.tx_backpressure;
                    m_tx_waiting = true;
                    break;
                }
                if (!sent) {
                    ++m_device.m_counters.tx_dropped;
                    m_device.m_log.warn("packet dropped: " + sent.error().message);
                } else {
                    ++m_device.m_counters.tx_packets;
                    m_device.m_counters.tx_bytes += chain.bytes - HeaderSize;
                }
            }
            vq->pop();
            vq->add_used(chain.head, 0);
            published = true;
            ++done;
        }
        m_moved += done;
        if (published)
            interrupt(TransmitQueue);
        return done >= m_device.m_options.budget;
    }

    // Delivers up to a budget of packets; true when the budget ran out.
    bool process_receive()
    {
        unsigned done = 0;
        bool published = false;
        while (queue(ReceiveQueue) && !m_rx_waiting && !m_rx_backend_failed && !m_rx_throttled && done < m_device.m_options.budget) {
            if (m_packet_len == 0 && !take_mmds_frame() && !read_packet(published))
                break;
            if (!m_packet_charged) {
                if (throttle(m_device.m_options.rx_limiter, m_rx_timer, m_packet_len - HeaderSize, m_rx_throttled,
                        m_device.m_counters.rx_throttled))
                    break; // the packet waits (in our buffer or in its chains unpublished), the backend unread
                m_packet_charged = true;
            }
            auto gathered = gather(published, m_packet_len);
            if (!gathered)
                break; // the queue failed
            if (!gathered.value()) {
                m_rx_waiting = true; // no more buffers: stop reading the backend
                break;
            }
            deliver();
            published = true;
            ++done;
        }
        m_moved += done;
        if (published)
            interrupt(ReceiveQueue);
        return done >= m_device.m_options.budget;
    }

private:
    Virtqueue* queue(std::uint16_t q) { return m_queues[q] ? &*m_queues[q] : nullptr; }

    // Takes a packet's tokens; true (and the timer armed) when they are not there yet.
    static bool throttle(RateLimiter* limiter, RateLimitTimer* timer, std::uint64_t bytes, bool& throttled,
        std::atomic<std::uint64_t>& counter)
    {
        if (limiter == nullptr || timer == nullptr)
            return false;
        std::uint64_t const wait_ns = limiter->try_consume(bytes, 1);
        if (wait_ns == 0)
            return false;
        timer->arm(wait_ns);
        throttled = true;
        ++counter;
        return true;
    }
    bool merge() const { return (m_features & feature::MrgRxbuf) != 0; }

    Result<bool> send(NetChain const& chain, NetHeader const& header)
    {
        // The header goes from our copy (the one we checked), the rest straight
        // from guest memory.
        std::vector<iovec> iov;
        iov.reserve(chain.buffers.size() + 1);
        // SAFETY: writev only reads through these pointers; header lives until
        // send() returns and the spans are GuestMemory slices of mapped RAM.
        iov.push_back(iovec { const_cast<NetHeader*>(&header), HeaderSize });
        std::size_t skip = HeaderSize;
        for (auto const& b : chain.buffers) {
            if (skip >= b.size()) {
                skip -= b.size();
                continue;
            }
            iov.push_back(iovec { b.data() + skip, b.size() - skip });
            skip = 0;
        }
        return m_device.m_backend.send(iov);
    }

    // Copies `len` bytes of a transmit chain's frame (after the header) from
    // offset `from` into out.
    static void copy_frame(NetChain const& chain, std::size_t from, std::span<std::byte> out)
    {
        std::size_t skip = HeaderSize + from, at = 0;
        for (auto const& b : chain.buffers) {
            if (at == out.size())
                break;
            if (skip >= b.size()) {
                skip -= b.size();
                continue;
            }
            std::size_t const n = std::min(b.size() - skip, out.size() - at);
            std::memcpy(out.data() + at, b.data() + skip, n);
            at += n;
            skip = 0;
        }
    }

    // Offers a transmit frame to the metadata service; true when it took it.
    // The frame is copied out of guest memory before it is parsed, so the guest
    // cannot change it under the parser.
    bool to_mmds(NetChain const& chain, NetHeader const& header)
    {
        std::uint64_t const frame_len = chain.bytes - HeaderSize;
        std::array<std::byte, MmdsStack::ClassifyBytes> prefix {};
        std::size_t const prefix_len = static_cast<std::size_t>(std::min<std::uint64_t>(frame_len, prefix.size()));
        copy_frame(chain, 0, std::span(prefix).first(prefix_len));
        if (!m_mmds->classify(std::span<std::byte const>(prefix).first(prefix_len)))
            return false;
        auto const before = m_mmds->counters();
        bool const gso = (header.gso_type & ~hdr::GsoEcn) != hdr::GsoNone;
        if (frame_len > MmdsStack::MaxFrameBytes) {
            m_mmds->handle(std::span<std::byte const>(prefix).first(prefix_len), true);
        } else {
            m_mmds_frame.resize(static_cast<std::size_t>(frame_len));
            copy_frame(chain, 0, m_mmds_frame);
            m_mmds->handle(m_mmds_frame, gso);
        }
        auto const after = m_mmds->counters();
        m_device.m_counters.mmds_rx_frames += after.frames_in - before.frames_in;
        m_device.m_counters.mmds_tx_frames += after.frames_out - before.frames_out;
        m_device.m_counters.mmds_dropped += after.dropped - before.dropped;
        return true;
    }

    // Makes the metadata service's next frame the pending packet; false when it has none.
    bool take_mmds_frame()
    {
        if (!mmds_pending())
            return false;
        auto frame = m_mmds->pop();
        if (frame.size() + HeaderSize > m_packet.size())
            return false; // never: the stack's frames are far smaller
        std::memset(m_packet.data(), 0, HeaderSize); // no offloads; num_buffers is set on delivery
        std::memcpy(m_packet.data() + HeaderSize, frame.data(), frame.size());
        m_packet_len = HeaderSize + frame.size();
        return true;
    }

    // Reads the next packet from the backend; false when none is waiting (or
    // the receive queue failed). When the guest has posted enough receive
    // buffers to hold the largest packet, the backend writes straight into
    // them (read_direct); otherwise into the device's buffer, copied on delivery.
    bool read_packet(bool& published)
    {
        auto room = gather(published, DirectBytes, false);
        if (!room)
            return false; // the queue failed
        if (room.value() && direct_capacity() >= DirectBytes)
            return read_direct();
        for (;;) {
            auto got = m_device.m_backend.receive(m_packet);
            if (!got) {
                m_device.m_log.warn("receiving from the backend: " + got.error().message);
                m_rx_backend_failed = true; // retried when the guest next posts buffers
                return false;
            }
            if (got.value() == 0)
                return false;
            if (got.value() < HeaderSize + MinFrameBytes || got.value() > m_packet.size()) {
                ++m_device.m_counters.rx_dropped;
                continue;
            }
            m_packet_len = got.value();
            m_packet_in_guest = false;
            return true;
        }
    }

    // The bytes the reserved chains can take at once: all of them with
    // MRG_RXBUF, the first alone without; limited to the pieces one read takes.
    std::uint64_t direct_capacity()
    {
        m_rx_iov.clear();
        std::uint64_t room = 0;
        for (auto const& chain : m_reserved) {
            for (auto const& b : chain.buffers) {
                if (m_rx_iov.size() == MaxReadPieces)
                    return room;
                m_rx_iov.push_back(iovec { b.data(), b.size() });
                room += b.size();
            }
            if (!merge())
                break;
        }
        return room;
    }

    // Reads a packet into the reserved chains (m_rx_iov, direct_capacity());
    // the chains are published on delivery, so a packet the rate limiter holds
    // back waits in them unpublished.
    bool read_direct()
    {
        std::uint64_t const room = std::accumulate(m_rx_iov.begin(), m_rx_iov.end(), std::uint64_t { 0 },
            [](std::uint64_t sum, iovec const& v) { return sum + v.iov_len; });
        for (;;) {
            auto got = m_device.m_backend.receive_into(m_rx_iov);
            if (!got) {
                m_device.m_log.warn("receiving from the backend: " + got.error().message);
                m_rx_backend_failed = true;
                return false;
            }
            if (got.value() == 0)
                return false;
            // A cut packet, or one too short to be a frame, is dropped; the
            // chains stay reserved for the next (the guest saw nothing yet).
            if (got.value() < HeaderSize + MinFrameBytes || got.value() > room) {
                ++m_device.m_counters.rx_dropped;
                continue;
            }
            m_packet_len = got.value();
            m_packet_in_guest = true;
            return true;
        }
    }

    // Takes receive chains until they hold `target` bytes (with MRG_RXBUF) or
    // one chain is taken (without). false: the ring ran dry first; the chains
    // taken so far stay reserved (for the pending packet, or the next one).
    // Refused chains are returned at once, with length 0. A dry ring asks the
    // guest to notify when it posts more only when `notify` is set: the probe
    // for room to read in place must not, or a guest that keeps less than the
    // largest packet posted would exit to notify after every buffer it posts.
    Result<bool> gather(bool& published, std::uint64_t target, bool notify = true)
    {
        auto* vq = queue(ReceiveQueue);
        while (m_reserved_bytes < target && (merge() || m_reserved.empty())) {
            auto head = vq->peek();
            if (!head)
                return fail_queue(ReceiveQueue, head.error().message);
            if (!head.value()) {
                if (!notify)
                    return false;
                auto more = vq->enable_notification();
                if (!more)
                    return fail_queue(ReceiveQueue, more.error().message);
                if (!more.value())
                    return false;
                continue;
            }
            DescriptorChain walk = vq->chain(*head.value());
            NetChain chain = parse_receive_chain(walk, m_mem);
            vq->pop();
            if (chain.refused()) {
                ++m_device.m_counters.errors;
                m_device.m_log.warn("receiveq chain at head " + std::to_string(chain.head) + " refused: " + chain.error);
                vq->add_used(chain.head, 0);
                published = true;
                continue;
            }
            m_reserved_bytes += chain.bytes;
            m_reserved.push_back(std::move(chain));
        }
        return true;
    }

    // Copies the pending packet into the reserved chains and publishes them; a
    // packet larger than a single chain without MRG_RXBUF is dropped instead and
    // the chain kept for the next one.
    void deliver()
    {
        if (m_reserved_bytes < m_packet_len) {
            ++m_device.m_counters.rx_dropped;
            m_device.m_log.warn("a " + std::to_string(m_packet_len - HeaderSize) + "-byte packet does not fit the guest's "
                + std::to_string(m_reserved_bytes) + "-byte receive buffer; dropped");
            m_packet_len = 0;
            m_packet_charged = false;
            m_packet_in_guest = false; // never: a packet read in place fits its chains
            return;
        }
        std::uint16_t chains = 0;
        for (std::uint64_t room = 0; room < m_packet_len; ++chains)
            room += m_reserved[chains].bytes;
        // num_buffers (the header's last field) as the guest must see it.
        std::uint16_t const num_buffers = merge() ? chains : 1;
        std::array<std::byte, sizeof num_buffers> count_bytes;
        std::memcpy(count_bytes.data(), &num_buffers, sizeof num_buffers);
        if (m_packet_in_guest)
            write_reserved(offsetof(NetHeader, num_buffers), count_bytes);
        else
            std::memcpy(m_packet.data() + offsetof(NetHeader, num_buffers), count_bytes.data(), count_bytes.size());

        std::size_t at = 0;
        auto* vq = queue(ReceiveQueue);
        for (std::uint16_t c = 0; c < chains; ++c) {
            NetChain const& chain = m_reserved[c];
            std::uint32_t written = 0;
            for (auto const& b : chain.buffers) {
                std::size_t const n = std::min(b.size(), m_packet_len - at);
                if (!m_packet_in_guest)
                    std::memcpy(b.data(), m_packet.data() + at, n);
                // Marked again as written: the chain was taken (and its pages
                // marked) maybe turns ago, and a capture since then has taken the
                // dirty log; read in place, the bytes also came after the mark.
                m_mem.mark_written(b.first(n));
                at += n;
                written += static_cast<std::uint32_t>(n);
                if (at == m_packet_len)
                    break;
            }
            vq->add_used(chain.head, written);
            m_reserved_bytes -= chain.bytes;
        }
        m_reserved.erase(m_reserved.begin(), m_reserved.begin() + chains);
        ++m_device.m_counters.rx_packets;
        if (m_packet_in_guest)
            ++m_device.m_counters.rx_direct;
        m_device.m_counters.rx_bytes += m_packet_len - HeaderSize;
        m_packet_len = 0;
        m_packet_charged = false;
        m_packet_in_guest = false;
    }

    // Writes bytes at `offset` of the packet that lies in the reserved chains.
    void write_reserved(std::size_t offset, std::span<std::byte const> bytes)
    {
        std::size_t done = 0;
        for (auto const& chain : m_reserved) {
            for (auto const& b : chain.buffers) {
                if (offset >= b.size()) {
                    offset -= b.size();
                    continue;
                }
                std::size_t const n = std::min(b.size() - offset, bytes.size() - done);
                std::memcpy(b.data() + offset, bytes.data() + done, n);
                done += n;
                offset = 0;
                if (done == bytes.size())
                    return;
            }
        }
    }

    void interrupt(std::uint16_t q)
    {
        if (auto* vq = queue(q); vq && vq->needs_interrupt())
            m_signals.signal_used(q);
    }

    Error fail_queue(std::uint16_t q, std::string const& why)
    {
        ++m_device.m_counters.errors;
        m_device.m_log.warn("queue " + std::to_string(q) + " stopped: " + why);
        m_queues[q].reset();
        if (q == ReceiveQueue) {
            m_reserved.clear();
            m_reserved_bytes = 0;
            if (m_packet_in_guest) { // it lay in the chains just given up
                m_packet_len = 0;
                m_packet_charged = false;
                m_packet_in_guest = false;
            }
        }
        m_signals.set_needs_reset();
        return make_error(ErrorKind::BadInput, why);
    }

    VirtioNet& m_device;
    GuestMemory const& m_mem;
    VirtioSignals& m_signals;
    std::uint64_t m_features;
    std::vector<std::optional<Virtqueue>> m_queues;

    std::optional<MmdsStack> m_mmds;      // with NetOptions::mmds
    std::vector<std::byte> m_mmds_frame;  // a transmit frame copied out for the service
    std::vector<std::byte> m_packet; // the packet read from the backend, not yet delivered
    std::size_t m_packet_len { 0 };  // 0: none
    bool m_packet_in_guest { false }; // the pending packet lies in m_reserved, not m_packet
    std::vector<iovec> m_rx_iov;     // the reserved chains' buffers, for read_direct
    std::deque<NetChain> m_reserved;  // receive chains taken for the pending (or the next) packet
    std::uint64_t m_reserved_bytes { 0 };
    bool m_rx_waiting { false };        // a packet waits for receive buffers
    bool m_rx_backend_failed { false }; // the backend's last receive failed
    bool m_tx_waiting { false };        // a packet waits for the backend
    bool m_packet_charged { false };    // m_packet's tokens are taken
    bool m_rx_throttled { false };      // the rx limiter's timer runs
    bool m_tx_throttled { false };      // the tx limiter's timer runs
    RateLimitTimer* m_rx_timer { nullptr };
    RateLimitTimer* m_tx_timer { nullptr };
    std::uint64_t m_moved { 0 };
    bool m_tx_quiet { false };
};

void VirtioNet::run(VirtioActivation activation)
{
    std::vector<std::optional<Virtqueue>> queues(QueueCount);
    for (std::uint16_t q = 0; q < QueueCount && q < activation.queues.size(); ++q) {
        if (!activation.queues[q].ready)
            continue;
        // activate() created these once already, so this cannot fail unless the
        // configuration changed, which the transport forbids after DRIVER_OK.
        auto vq = Virtqueue::create(*activation.mem, activation.queues[q], m_options.queue_size, activation.features);
        if (vq) {
            if (q < activation.start_indices.size())
                vq.value().resume_at(activation.start_indices[q]);
            queues[q] = std::move(vq.value());
        }
    }
    // The backend's offloads are switched here and at the end of this thread,
    // so that only the device's own thread ever configures its tap.
    std::uint64_t const f = activation.features;
    Offloads offloads;
    offloads.csum = (f & feature::GuestCsum) != 0;
    offloads.tso4 = offloads.csum && (f & feature::GuestTso4) != 0;
    offloads.tso6 = offloads.csum && (f & feature::GuestTso6) != 0;
    if (auto r = m_backend.set_offloads(offloads); !r) {
        // The tap would hand the guest packets it did not agree to take.
        m_log.warn(r.error().message + "; device stopped");
        activation.signals->set_needs_reset();
        quiet();
        while (!m_stop.load()) {
            pollfd p { m_control.get(), POLLIN, 0 };
            ::poll(&p, 1, 100);
            eventfd_drain(m_control.get());
        }
        return;
    }
    struct Withdraw {
        VirtioNet& device;
        // A driver that comes back may accept fewer offloads; until it does, the
        // backend must not produce packets that need any.
        ~Withdraw()
        {
            if (auto r = device.m_backend.set_offloads(Offloads {}); !r)
                device.m_log.warn(r.error().message);
        }
    } withdraw { *this };

    Engine engine(*this, activation, std::move(queues));
    // Without a timer a limiter could not wait, so its direction goes unlimited
    // (and the log says so) rather than failing packets.
    std::optional<RateLimitTimer> rx_timer, tx_timer;
    if (m_options.rx_limiter || m_options.tx_limiter) {
        auto rx = RateLimitTimer::create();
        auto tx = RateLimitTimer::create();
        if (rx && tx) {
            rx_timer.emplace(std::move(rx.value()));
            tx_timer.emplace(std::move(tx.value()));
        } else {
            m_log.warn("no timerfd for the rate limiters; traffic goes unlimited");
        }
    }
    engine.set_timers(rx_timer ? &*rx_timer : nullptr, tx_timer ? &*tx_timer : nullptr);

    Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    auto watch = [&](int op, int fd, std::uint32_t events, std::uint64_t key) {
        epoll_event ev {};
        ev.events = events;
        ev.data.u64 = key;
        return ::epoll_ctl(epoll.get(), op, fd, &ev) == 0;
    };
    bool fine = epoll.valid() && watch(EPOLL_CTL_ADD, m_control.get(), EPOLLIN, ControlKey);
    for (std::uint16_t q = 0; fine && q < QueueCount && q < activation.queues.size(); ++q)
        if (activation.queues[q].ready)
            fine = watch(EPOLL_CTL_ADD, activation.eventfds->fd(q), EPOLLIN, q);
    // The backend is registered only while the engine wants something of it:
    // epoll reports errors and hang-ups even for an empty event mask, and a tap
    // whose interface was deleted stays in error for good.
    std::uint32_t backend_events = 0;
    if (rx_timer)
        fine = fine && watch(EPOLL_CTL_ADD, rx_timer->fd(), EPOLLIN, RxTimerKey) && watch(EPOLL_CTL_ADD, tx_timer->fd(), EPOLLIN, TxTimerKey);
    if (!fine) {
        m_log.warn("cannot set up the I/O thread's epoll; device stopped");
        activation.signals->set_needs_reset();
        quiet();
        while (!m_stop.load()) {
            pollfd p { m_control.get(), POLLIN, 0 };
            ::poll(&p, 1, 100);
            eventfd_drain(m_control.get());
        }
        return;
    }

    // Buffers posted before DRIVER_OK are looked at once at the start.
    bool more_tx = engine.process_transmit();
    bool more_rx = engine.process_receive();
    // The metadata service's answers are due without any event from the backend.
    auto receive_due = [&engine](bool receive) { return receive || engine.mmds_pending(); };
    // Busy polling: for NetOptions::poll_us after the last packet moved, the
    // loop looks at its events without sleeping, so the answer to a packet (or
    // the next of a stream) is taken without a wake-up of this thread.
    auto const poll_window = std::chrono::microseconds(m_options.poll_us);
    std::uint64_t moved = engine.moved();
    auto last_moved = std::chrono::steady_clock::now() - (moved > 0 ? std::chrono::microseconds(0) : poll_window);
    while (!m_stop.load()) {
        // A snapshot parks the thread here, between two turns: the queues'
        // events wait in their eventfds (level-triggered) for the next turn.
        park_if_paused();
        if (m_stop.load())
            break;
        std::uint32_t const want = (engine.wants_receive() ? EPOLLIN : 0u) | (engine.wants_send() ? EPOLLOUT : 0u);
        if (want != backend_events) {
            bool done = false;
            if (want == 0)
                done = ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, m_backend.fd(), nullptr) == 0;
            else
                done = watch(backend_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, m_backend.fd(), want, BackendKey);
            if (done)
                backend_events = want;
        }
        bool polling = m_options.poll_us > 0 && std::chrono::steady_clock::now() - last_moved < poll_window;
        if (!polling && engine.tx_quiet()) {
            // The window closed: ask the guest to notify again and look at the
            // ring once more before this thread may sleep.
            engine.set_tx_quiet(false);
            more_tx = engine.process_transmit() || more_tx;
            if (engine.moved() != moved) {
                moved = engine.moved();
                last_moved = std::chrono::steady_clock::now();
                polling = true;
            }
        }
        if (polling)
            engine.set_tx_quiet(true);
        epoll_event events[8];
        int n = ::epoll_wait(epoll.get(), events, 8, more_tx || more_rx || polling ? 0 : -1);
        if (n < 0)
            continue; // EINTR
        bool receive = more_rx, transmit = more_tx || polling;
        for (int i = 0; i < n; ++i) {
            std::uint64_t const key = events[i].data.u64;
            if (key == ControlKey) {
                eventfd_drain(m_control.get());
            } else if (key == RxTimerKey) {
                rx_timer->consume();
                engine.rx_timer_fired();
                receive = true;
            } else if (key == TxTimerKey) {
                tx_timer->consume();
                engine.tx_timer_fired();
                transmit = true;
            } else if (key == BackendKey) {
                if (events[i].events & EPOLLOUT) {
                    engine.backend_writable();
                    transmit = true;
                }
                if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    receive = true;
            } else {
                auto const q = static_cast<std::uint16_t>(key);
                eventfd_drain(activation.eventfds->fd(q));
                if (q == TransmitQueue) {
                    transmit = true;
                } else {
                    engine.receive_buffers_posted();
                    receive = true;
                }
            }
        }
        if (m_stop.load())
            break;
        more_tx = transmit && engine.process_transmit();
        more_rx = receive_due(receive) && engine.process_receive();
        if (engine.moved() != moved) {
            moved = engine.moved();
            last_moved = std::chrono::steady_clock::now();
        }
    }
}

} // namespace strata::virtio::net
