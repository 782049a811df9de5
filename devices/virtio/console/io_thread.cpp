// The virtio-console I/O thread: one epoll loop per activation over the two queue
// eventfds and the control eventfd, and the per-queue work (Engine). See device.h
// for the contract.
#include "devices/virtio/console/chain.h"
#include "devices/virtio/console/device.h"
#include "devices/virtio/queue.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <vector>

namespace strata::virtio::console {

namespace {

constexpr std::uint64_t ControlKey = 1ULL << 32;

} // namespace

// The queues of one activation. Only the I/O thread touches it.
class VirtioConsole::Engine {
public:
    Engine(VirtioConsole& device, VirtioActivation const& activation, std::vector<std::optional<Virtqueue>> queues)
        : m_device(device)
        , m_mem(*activation.mem)
        , m_signals(*activation.signals)
        , m_queues(std::move(queues))
    {
    }

    void process_transmit()
    {
        bool published = false;
        while (auto* vq = queue(TransmitQueue)) {
            auto head = vq->peek();
            if (!head) {
                fail_queue(TransmitQueue, head.error().message);
                break;
            }
            if (!head.value()) {
                auto more = vq->enable_notification();
                if (!more) {
                    fail_queue(TransmitQueue, more.error().message);
                    break;
                }
                if (!more.value())
                    break;
                continue;
            }
            DescriptorChain chain = vq->chain(*head.value());
            ConsoleChain parsed = parse_transmit_chain(chain, m_mem);
            if (parsed.refused()) {
                ++m_device.m_counters.errors;
                m_device.m_log.warn("transmitq chain at head " + std::to_string(*head.value()) + " refused: " + parsed.error);
            } else {
                for (auto const& b : parsed.buffers)
                    m_device.m_sink(std::span<std::byte const>(b.data(), b.size()));
                m_device.m_counters.bytes_from_guest += parsed.bytes;
                ++m_device.m_counters.transmit_chains;
            }
            vq->pop();
            // The device writes nothing into a transmit buffer.
            vq->add_used(*head.value(), 0);
            published = true;
        }
        if (published)
            interrupt(TransmitQueue);
    }

    void process_receive()
    {
        bool published = false;
        while (auto* vq = queue(ReceiveQueue)) {
            if (m_device.pending() == 0) {
                // Nothing to deliver: leave the guest's buffers posted, but keep
                // notifications on so that new buffers wake us when data arrives.
                if (auto more = vq->enable_notification(); !more)
                    fail_queue(ReceiveQueue, more.error().message);
                break;
            }
            auto head = vq->peek();
            if (!head) {
                fail_queue(ReceiveQueue, head.error().message);
                break;
            }
            if (!head.value()) {
                auto more = vq->enable_notification();
                if (!more) {
                    fail_queue(ReceiveQueue, more.error().message);
                    break;
                }
                if (!more.value())
                    break;
                continue;
            }
            DescriptorChain chain = vq->chain(*head.value());
            ConsoleChain parsed = parse_receive_chain(chain, m_mem);
            std::uint32_t written = 0;
            if (parsed.refused()) {
                ++m_device.m_counters.errors;
                m_device.m_log.warn("receiveq chain at head " + std::to_string(*head.value()) + " refused: " + parsed.error);
            } else {
                written = fill(parsed);
                ++m_device.m_counters.receive_chains;
            }
            vq->pop();
            vq->add_used(*head.value(), written);
            published = true;
        }
        if (published)
            interrupt(ReceiveQueue);
    }

private:
    Virtqueue* queue(std::uint16_t q) { return m_queues[q] ? &*m_queues[q] : nullptr; }

    // Copies pending host bytes into the chain's buffers; returns the count.
    std::uint32_t fill(ConsoleChain const& chain)
    {
        std::lock_guard lock(m_device.m_buffer_lock);
        auto& buffer = m_device.m_buffer;
        std::uint64_t done = 0;
        for (auto const& b : chain.buffers) {
            std::size_t const n = std::min(b.size(), buffer.size());
            std::copy_n(buffer.begin(), n, b.begin());
            buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
            done += n;
            if (buffer.empty())
                break;
        }
        m_device.m_counters.bytes_to_guest += done;
        // MaxChainBytes keeps this far below 4 GiB.
        return static_cast<std::uint32_t>(done);
    }

    void interrupt(std::uint16_t q)
    {
        if (auto* vq = queue(q); vq && vq->needs_interrupt())
            m_signals.signal_used(q);
    }

    void fail_queue(std::uint16_t q, std::string const& why)
    {
        ++m_device.m_counters.errors;
        m_device.m_log.warn("queue " + std::to_string(q) + " stopped: " + why);
        m_queues[q].reset();
        m_signals.set_needs_reset();
    }

    VirtioConsole& m_device;
    GuestMemory const& m_mem;
    VirtioSignals& m_signals;
    std::vector<std::optional<Virtqueue>> m_queues;
};

void VirtioConsole::run(VirtioActivation activation)
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
    Engine engine(*this, activation, std::move(queues));

    Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    auto watch = [&](int fd, std::uint64_t key) {
        epoll_event ev {};
        ev.events = EPOLLIN;
        ev.data.u64 = key;
        return ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    };
    bool fine = epoll.valid() && watch(m_control.get(), ControlKey);
    for (std::uint16_t q = 0; fine && q < QueueCount && q < activation.queues.size(); ++q)
        if (activation.queues[q].ready)
            fine = watch(activation.eventfds->fd(q), q);
    if (!fine) {
        m_log.warn("cannot set up the I/O thread's epoll; device stopped");
        activation.signals->set_needs_reset();
        while (!m_stop.load()) {
            pollfd p { m_control.get(), POLLIN, 0 };
            ::poll(&p, 1, 100);
            eventfd_drain(m_control.get());
        }
        return;
    }

    // Buffers and data posted before DRIVER_OK are looked at once at the start.
    engine.process_transmit();
    engine.process_receive();
    while (!m_stop.load()) {
        epoll_event events[4];
        int n = ::epoll_wait(epoll.get(), events, 4, -1);
        if (n < 0)
            continue; // EINTR
        bool receive = false, transmit = false;
        for (int i = 0; i < n; ++i) {
            std::uint64_t const key = events[i].data.u64;
            if (key == ControlKey) {
                eventfd_drain(m_control.get());
                receive = true;
            } else {
                auto const q = static_cast<std::uint16_t>(key);
                eventfd_drain(activation.eventfds->fd(q));
                (q == TransmitQueue ? transmit : receive) = true;
            }
        }
        if (m_stop.load())
            break;
        if (transmit)
            engine.process_transmit();
        if (receive)
            engine.process_receive();
    }
}

} // namespace strata::virtio::console
