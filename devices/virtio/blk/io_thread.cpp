// The virtio-blk I/O thread: one epoll loop per activated device over its queue
// eventfds, the backend's completion_fd and the device's control eventfd. See
// device.h for the pause/resume/reset contract this loop implements.
#include "devices/virtio/blk/device.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <sys/epoll.h>
#include <unistd.h>

namespace strata::virtio::blk {

namespace {

constexpr std::uint64_t ControlKey = 1ULL << 32;
constexpr std::uint64_t CompletionKey = 2ULL << 32;
constexpr std::uint64_t TimerKey = 3ULL << 32;

bool watch(int epfd, int fd, std::uint64_t key, bool add)
{
    epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.u64 = key;
    return ::epoll_ctl(epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) == 0;
}

} // namespace

void VirtioBlk::run(BlkEngine& engine, VirtioActivation activation)
{
    Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    auto timer = RateLimitTimer::create();
    bool fine = epoll.valid() && timer && watch(epoll.get(), m_control.get(), ControlKey, true)
        && watch(epoll.get(), m_backend.completion_fd(), CompletionKey, true)
        && watch(epoll.get(), timer.value().fd(), TimerKey, true);
    if (timer)
        engine.set_timer(&timer.value());
    for (std::uint16_t q = 0; fine && q < activation.queues.size(); ++q) {
        if (activation.queues[q].ready)
            fine = watch(epoll.get(), activation.eventfds->fd(q), q, true);
    }
    if (!fine) {
        m_log.warn("cannot set up the I/O thread's epoll; device stopped");
        activation.signals->set_needs_reset();
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [this] { return m_stop; });
        return;
    }

    bool paused = false;
#if STRATA_TEST_HOOKS
    bool stalled = false;
#endif
    // Chains the driver queued before DRIVER_OK are taken at once.
    bool kick_all = true;
    while (true) {
        bool stop = false;
        bool want_pause = false;
        {
            std::lock_guard lock(m_mutex);
            stop = m_stop;
            want_pause = m_pause_requested;
        }
        if (stop) {
            // Reset: wait for the backend, but leave the rings alone.
            engine.drain(false);
            return;
        }
        if (want_pause && !paused) {
#if STRATA_TEST_HOOKS
            // Test hook: a drain that takes this long, as when the host's I/O hangs.
            if (char const* stall = std::getenv("STRATA_TEST_BLK_DRAIN_STALL_MS"); stall != nullptr && !stalled) {
                stalled = true;
                std::this_thread::sleep_for(std::chrono::milliseconds(std::strtoull(stall, nullptr, 10)));
                continue;
            }
#endif
            engine.set_paused(true);
            if (engine.in_flight() == 0) {
                paused = true;
                // From here the VMM may drive the backend; keep away from it.
                watch(epoll.get(), m_backend.completion_fd(), CompletionKey, false);
                std::lock_guard lock(m_mutex);
                m_paused = true;
                m_cv.notify_all();
            }
        } else if (!want_pause && (paused || kick_all)) {
            if (paused)
                watch(epoll.get(), m_backend.completion_fd(), CompletionKey, true);
            paused = false;
            kick_all = false;
            {
                std::lock_guard lock(m_mutex);
                m_paused = false;
            }
            engine.set_paused(false);
            // Notifications that arrived while paused were consumed; look at every queue.
            engine.process_all();
            continue;
        }

        epoll_event events[16];
        int n = ::epoll_wait(epoll.get(), events, 16, -1);
        if (n < 0)
            continue; // EINTR
        for (int i = 0; i < n; ++i) {
            std::uint64_t const key = events[i].data.u64;
            if (key == ControlKey) {
                eventfd_drain(m_control.get());
                // The rate limit may have changed (set_rate_limit): look again.
                if (engine.throttled() && !paused)
                    engine.on_timer();
            } else if (key == TimerKey) {
                if (timer.value().consume())
                    engine.on_timer();
            } else if (key == CompletionKey) {
                if (!paused)
                    engine.reap();
            } else {
                auto const q = static_cast<std::uint16_t>(key);
                eventfd_drain(activation.eventfds->fd(q));
                engine.process_queue(q);
            }
        }
    }
}

} // namespace strata::virtio::blk
