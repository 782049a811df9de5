#include "devices/virtio/transport_state.h"

#include "devices/virtio/spec.h"

#include <cerrno>
#include <cstdio>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata::virtio {

Result<QueueEventfds> QueueEventfds::create(std::uint16_t count)
{
    QueueEventfds out;
    for (std::uint16_t i = 0; i < count; ++i) {
        int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            return errno_error("eventfd for a virtqueue");
        out.m_fds.emplace_back(fd);
    }
    return out;
}

void QueueEventfds::notify(std::uint16_t queue) const
{
    if (queue >= m_fds.size())
        return;
    eventfd_signal(m_fds[queue].get());
}

Result<std::unique_ptr<TransportState>> TransportState::create(VirtioDevice& device, GuestMemory const& mem,
    VirtioSignals& signals)
{
    if (device.num_queues() == 0)
        return make_error(ErrorKind::Internal, "virtio device without queues");
    STRATA_TRY(fds, QueueEventfds::create(device.num_queues()));
    return std::unique_ptr<TransportState>(new TransportState(device, mem, signals, std::move(fds)));
}

TransportState::TransportState(VirtioDevice& device, GuestMemory const& mem, VirtioSignals& signals,
    QueueEventfds eventfds)
    : m_device(&device)
    , m_mem(&mem)
    , m_signals(&signals)
    , m_eventfds(std::move(eventfds))
    , m_queues(device.num_queues(), QueueConfig { device.max_queue_size(), false, 0, 0, 0 })
{
}

std::uint32_t TransportState::device_features_word() const
{
    if (m_device_features_sel > 1)
        return 0;
    return static_cast<std::uint32_t>(m_device->features() >> (32 * m_device_features_sel));
}

std::uint32_t TransportState::driver_features_word() const
{
    if (m_driver_features_sel > 1)
        return 0;
    return static_cast<std::uint32_t>(m_driver_features >> (32 * m_driver_features_sel));
}

void TransportState::write_driver_features_word(std::uint32_t value)
{
    if ((m_status & status::FeaturesOk) || m_driver_features_sel > 1)
        return;
    unsigned const shift = 32 * m_driver_features_sel;
    m_driver_features = (m_driver_features & ~(0xffffffffULL << shift)) | (std::uint64_t(value) << shift);
}

std::uint8_t TransportState::status() const
{
    return static_cast<std::uint8_t>(m_status | (m_needs_reset.load(std::memory_order_relaxed) ? status::DeviceNeedsReset : 0));
}

void TransportState::reset()
{
    m_device->reset();
    m_active = false;
    m_device_features_sel = 0;
    m_driver_features_sel = 0;
    m_driver_features = 0;
    m_status = 0;
    m_needs_reset.store(false, std::memory_order_relaxed);
    m_queue_sel = 0;
    for (auto& q : m_queues)
        q = QueueConfig { m_device->max_queue_size(), false, 0, 0, 0 };
}

bool TransportState::write_status(std::uint8_t value)
{
    if (value == 0) {
        reset();
        return true;
    }
    value = static_cast<std::uint8_t>(value & ~status::DeviceNeedsReset);
    // Status bits are only ever added (§2.1.1); anything else is a driver bug that
    // we ignore rather than act on.
    if ((value & m_status) != m_status)
        return false;
    std::uint8_t const added = static_cast<std::uint8_t>(value & ~m_status);
    if (added & status::FeaturesOk) {
        bool const subset = (m_driver_features & ~m_device->features()) == 0;
        bool const v1 = (m_driver_features & feature::Version1) != 0;
        if (!subset || !v1)
            value = static_cast<std::uint8_t>(value & ~status::FeaturesOk);
    }
    if ((added & status::DriverOk) && !(value & status::FeaturesOk))
        value = static_cast<std::uint8_t>(value & ~status::DriverOk);
    m_status = value;
    if ((added & status::DriverOk) && (value & status::DriverOk) && !(value & status::Failed))
        activate();
    return false;
}

void TransportState::activate(std::vector<std::uint16_t> start_indices)
{
    bool valid = true;
    std::uint16_t const max = m_device->max_queue_size();
    for (auto const& q : m_queues) {
        if (q.ready && (q.size == 0 || (q.size & (q.size - 1)) != 0 || q.size > max))
            valid = false;
    }
    Status result = ok();
    if (valid)
        result = m_device->activate(VirtioActivation { m_mem, m_driver_features, m_queues, &m_eventfds, m_signals, std::move(start_indices) });
    else
        result = make_error(ErrorKind::BadInput, "a ready queue has an invalid size");
    if (result) {
        m_active = true;
        return;
    }
    std::fprintf(stderr, "strata: virtio device %u: activation failed: %s\n", m_device->device_id(),
        result.error().message.c_str());
    m_signals->set_needs_reset();
}

Result<TransportSnapshot> TransportState::save() const
{
    TransportSnapshot s;
    s.device_features_sel = m_device_features_sel;
    s.driver_features_sel = m_driver_features_sel;
    s.driver_features = m_driver_features;
    s.status = m_status;
    s.needs_reset = m_needs_reset.load(std::memory_order_relaxed);
    s.queue_sel = m_queue_sel;
    for (auto const& q : m_queues) {
        QueueSnapshot qs { q, 0 };
        if (m_active && q.ready) {
            // used->idx: the second 16-bit word of the used ring.
            STRATA_TRY(idx, m_mem->read<std::uint16_t>(q.device + 2));
            qs.index = idx;
        }
        s.queues.push_back(qs);
    }
    return s;
}

Status TransportState::restore(TransportSnapshot const& snapshot)
{
    if (m_status != 0 || m_active)
        return make_error(ErrorKind::Internal, "virtio state restored into a device already in use");
    if (snapshot.queues.size() != m_queues.size())
        return make_error(ErrorKind::BadInput, "virtio device " + std::to_string(m_device->device_id()) + ": the snapshot has "
            + std::to_string(snapshot.queues.size()) + " queues, the device " + std::to_string(m_queues.size()));
    std::uint16_t const max = m_device->max_queue_size();
    for (auto const& q : snapshot.queues) {
        if (q.config.ready && (q.config.size == 0 || (q.config.size & (q.config.size - 1)) != 0 || q.config.size > max))
            return make_error(ErrorKind::BadInput, "virtio device " + std::to_string(m_device->device_id()) + ": a saved queue has an invalid size");
    }
    if ((snapshot.driver_features & ~m_device->features()) != 0)
        return make_error(ErrorKind::BadInput, "virtio device " + std::to_string(m_device->device_id()) + ": the saved driver features are not offered by this device");
    m_device_features_sel = snapshot.device_features_sel;
    m_driver_features_sel = snapshot.driver_features_sel;
    m_driver_features = snapshot.driver_features;
    m_status = snapshot.status;
    m_needs_reset.store(snapshot.needs_reset, std::memory_order_relaxed);
    m_queue_sel = snapshot.queue_sel;
    std::vector<std::uint16_t> indices;
    for (std::size_t i = 0; i < m_queues.size(); ++i) {
        m_queues[i] = snapshot.queues[i].config;
        indices.push_back(snapshot.queues[i].index);
    }
    bool const live = (m_status & status::DriverOk) && (m_status & status::FeaturesOk) && !(m_status & status::Failed) && !snapshot.needs_reset;
    if (live)
        activate(std::move(indices));
    return ok();
}

QueueConfig const* TransportState::selected_queue() const
{
    return m_queue_sel < m_queues.size() ? &m_queues[m_queue_sel] : nullptr;
}

QueueConfig* TransportState::writable_queue()
{
    if (m_status & status::DriverOk)
        return nullptr;
    return m_queue_sel < m_queues.size() ? &m_queues[m_queue_sel] : nullptr;
}

} // namespace strata::virtio
