// A guest-side virtio-blk request helper shared by the transport tests: builds
// request chains in guest memory, publishes them, notifies through a
// transport-specific callback and waits for the used ring, as a polling driver
// (like the firmware's) would.
#pragma once

#include "devices/interrupt.h"
#include "devices/virtio/blk/config.h"
#include "tests/devices/virtio_test_driver.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace strata::test {

class CountingLine final : public InterruptLine {
public:
    void trigger() override { ++count; }
    std::atomic<unsigned> count { 0 };
};

struct BlkResult {
    bool completed { false };
    std::uint8_t status { 0xff };
    std::uint32_t used_len { 0 };
};

class BlkGuest {
public:
    BlkGuest(TestMemory& ram, TestDriver& drv, std::function<void()> notify)
        : m_ram(ram)
        , m_drv(drv)
        , m_notify(std::move(notify))
    {
    }

    // Queues one request (not yet notified); returns the status byte's address.
    std::uint64_t queue(std::uint32_t type, std::uint64_t sector, std::uint64_t data, std::uint32_t len, bool to_device)
    {
        std::uint64_t hdr = m_drv.alloc(16);
        (void)m_ram.mem().write<std::uint32_t>(hdr, type);
        (void)m_ram.mem().write<std::uint32_t>(hdr + 4, 0);
        (void)m_ram.mem().write<std::uint64_t>(hdr + 8, sector);
        std::uint64_t status = m_drv.alloc(1);
        (void)m_ram.mem().write<std::uint8_t>(status, 0xff);
        std::vector<Seg> segs { { hdr, 16, false } };
        if (len > 0)
            segs.push_back({ data, len, !to_device });
        segs.push_back({ status, 1, true });
        m_drv.publish(m_drv.build_chain(segs));
        ++m_expected;
        return status;
    }
    void notify() { m_notify(); }

    // Waits until the used ring holds every queued request (or the timeout).
    bool wait_all(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000))
    {
        auto until = std::chrono::steady_clock::now() + timeout;
        while (m_drv.used_idx() != m_expected) {
            if (std::chrono::steady_clock::now() > until)
                return false;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return true;
    }

    // One request, notified and waited for.
    BlkResult run(std::uint32_t type, std::uint64_t sector, std::uint64_t data, std::uint32_t len, bool to_device)
    {
        std::uint16_t const slot = m_expected;
        std::uint64_t status = queue(type, sector, data, len, to_device);
        notify();
        BlkResult r;
        r.completed = wait_all();
        r.status = m_ram.mem().read<std::uint8_t>(status).value();
        r.used_len = m_drv.used_elem(slot).second;
        return r;
    }

    std::uint16_t expected() const { return m_expected; }

private:
    TestMemory& m_ram;
    TestDriver& m_drv;
    std::function<void()> m_notify;
    std::uint16_t m_expected { 0 };
};

} // namespace strata::test
