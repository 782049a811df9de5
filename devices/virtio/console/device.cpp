#include "devices/virtio/console/device.h"
#include "base/thread.h"

#include "devices/virtio/spec.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata::virtio::console {

Result<std::unique_ptr<VirtioConsole>> VirtioConsole::create(ConsoleOptions options, Sink sink)
{
    if (options.queue_size == 0 || !std::has_single_bit(options.queue_size) || options.queue_size > MaxQueueSize)
        return make_error(ErrorKind::Usage, "virtio-console queue size must be a power of 2 up to 32768");
    if (options.host_buffer_bytes == 0)
        return make_error(ErrorKind::Usage, "virtio-console needs a host buffer of at least 1 byte");
    if (!sink)
        return make_error(ErrorKind::Usage, "virtio-console needs a sink for the guest's output");
    auto device = std::unique_ptr<VirtioConsole>(new VirtioConsole(std::move(options), std::move(sink)));
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return errno_error("eventfd for virtio-console control");
    device->m_control = Fd(fd);
    return device;
}

VirtioConsole::VirtioConsole(ConsoleOptions options, Sink sink)
    : m_options(std::move(options))
    , m_sink(std::move(sink))
    , m_log("strata: virtio-console '" + m_options.name + "'")
{
    // Nothing console-specific is offered (config.h says why); the ring features
    // are the core's.
    m_features = virtio::feature::Version1 | virtio::feature::RingIndirectDesc | virtio::feature::RingEventIdx;
}

VirtioConsole::~VirtioConsole() { reset(); }

void VirtioConsole::read_config(std::uint64_t offset, std::span<std::byte> data) const
{
    ConfigSpace const config {};
    std::memset(data.data(), 0, data.size());
    if (offset >= sizeof config)
        return;
    std::size_t const n = std::min<std::size_t>(data.size(), sizeof config - offset);
    // SAFETY: reading the bytes of a trivially copyable struct for the driver.
    std::memcpy(data.data(), reinterpret_cast<std::byte const*>(&config) + offset, n);
}

void VirtioConsole::write_config(std::uint64_t, std::span<std::byte const>)
{
    // emerg_wr is the only writable field, and only with F_EMERG_WRITE, which is
    // not offered: every write is ignored.
}

Status VirtioConsole::activate(VirtioActivation activation)
{
    std::lock_guard lock(m_mutex);
    if (m_running)
        return make_error(ErrorKind::Internal, "virtio-console activated twice without a reset");
    // Queues are checked here (sizes, ring placement), before the thread starts,
    // so a bad one fails DRIVER_OK instead of surfacing later.
    for (auto const& cfg : activation.queues) {
        if (cfg.ready)
            STRATA_TRY(Virtqueue::create(*activation.mem, cfg, m_options.queue_size, activation.features));
    }
    m_stop = false;
    m_running = true;
    auto a = std::make_shared<VirtioActivation>(std::move(activation));
    m_thread = start_thread(ThreadKind::DeviceIo, "strata-vconsole", [this, a] { run(std::move(*a)); });
    return ok();
}

void VirtioConsole::wake()
{
    eventfd_signal(m_control.get());
}

void VirtioConsole::reset()
{
    {
        std::lock_guard lock(m_mutex);
        if (!m_running)
            return;
        m_stop = true;
    }
    wake();
    m_thread.join();
    std::lock_guard lock(m_mutex);
    m_running = false;
    m_stop = false;
}

bool VirtioConsole::active() const
{
    std::lock_guard lock(m_mutex);
    return m_running;
}

std::size_t VirtioConsole::write(std::span<std::byte const> data)
{
    std::size_t taken = 0;
    {
        std::lock_guard lock(m_buffer_lock);
        std::size_t const room = m_options.host_buffer_bytes - std::min(m_options.host_buffer_bytes, m_buffer.size());
        taken = std::min(room, data.size());
        m_buffer.insert(m_buffer.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(taken));
    }
    m_counters.refused_bytes += data.size() - taken;
    if (taken > 0)
        wake();
    return taken;
}

std::size_t VirtioConsole::discard_pending()
{
    std::lock_guard lock(m_buffer_lock);
    std::size_t const n = m_buffer.size();
    m_buffer.clear();
    m_counters.discarded_bytes += n;
    return n;
}

std::size_t VirtioConsole::pending() const
{
    std::lock_guard lock(m_buffer_lock);
    return m_buffer.size();
}

ConsoleMetrics VirtioConsole::metrics() const
{
    auto const& c = m_counters;
    return ConsoleMetrics { c.bytes_to_guest.load(), c.bytes_from_guest.load(), c.receive_chains.load(),
        c.transmit_chains.load(), c.errors.load(), c.refused_bytes.load(), c.discarded_bytes.load() };
}

} // namespace strata::virtio::console
