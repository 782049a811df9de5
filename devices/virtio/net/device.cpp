#include "devices/virtio/net/device.h"

#include "base/thread.h"
#include "devices/virtio/spec.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <sys/eventfd.h>

namespace strata::virtio::net {

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(NetBackend& backend, NetOptions options)
{
    if (options.queue_size == 0 || !std::has_single_bit(options.queue_size) || options.queue_size > MaxQueueSize)
        return make_error(ErrorKind::Usage, "virtio-net queue size must be a power of 2 up to 32768");
    if (options.budget == 0)
        return make_error(ErrorKind::Usage, "virtio-net needs a budget of at least 1 packet");
    if (options.mac[0] & 1)
        return make_error(ErrorKind::Usage, "virtio-net MAC " + format_mac(options.mac) + " is a multicast address");
    auto device = std::unique_ptr<VirtioNet>(new VirtioNet(backend, std::move(options)));
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return errno_error("eventfd for virtio-net control");
    device->m_control = Fd(fd);
    return device;
}

VirtioNet::VirtioNet(NetBackend& backend, NetOptions options)
    : m_backend(backend)
    , m_options(std::move(options))
    , m_log("strata: virtio-net '" + m_options.id + "'")
    , m_driver_mac(m_options.mac)
{
    m_features = virtio::feature::Version1 | virtio::feature::RingIndirectDesc | virtio::feature::RingEventIdx
        | feature::Mac | feature::Status | feature::MrgRxbuf | feature::Csum | feature::GuestCsum | feature::HostTso4
        | feature::HostTso6 | feature::GuestTso4 | feature::GuestTso6;
}

VirtioNet::~VirtioNet() { reset(); }

void VirtioNet::read_config(std::uint64_t offset, std::span<std::byte> data) const
{
    ConfigSpace config {};
    MacAddress mac {};
    {
        std::lock_guard lock(m_mutex);
        mac = m_options.mac;
    }
    std::memcpy(config.mac, mac.data(), sizeof config.mac);
    config.status = StatusLinkUp;
    config.max_virtqueue_pairs = 1;
    std::memset(data.data(), 0, data.size());
    if (offset >= sizeof config)
        return;
    std::size_t const n = std::min<std::size_t>(data.size(), sizeof config - offset);
    // SAFETY: reading the bytes of a trivially copyable struct for the driver.
    std::memcpy(data.data(), reinterpret_cast<std::byte const*>(&config) + offset, n);
}

void VirtioNet::write_config(std::uint64_t, std::span<std::byte const>)
{
    // The MAC is writable only for legacy drivers (§5.1.4.2: a 1.x driver MUST
    // NOT write it) and nothing else is writable: every write is ignored.
}

Status VirtioNet::activate(VirtioActivation activation)
{
    std::lock_guard lock(m_mutex);
    if (m_running)
        return make_error(ErrorKind::Internal, "virtio-net activated twice without a reset");
    for (auto const& cfg : activation.queues) {
        if (cfg.ready)
            STRATA_TRY(Virtqueue::create(*activation.mem, cfg, m_options.queue_size, activation.features));
    }
    // A driver that activates the device probed it first and read the MAC
    // presented; a restored one goes on with the MAC the snapshot saved.
    if (!m_restored)
        m_driver_mac = m_options.mac;
    m_restored = false;
    m_stop = false;
    m_running = true;
    m_signals = activation.signals;
    m_negotiated = activation.features;
    // Activation runs on the vCPU that wrote DRIVER_OK: start_thread gives the
    // tap's thread the device I/O filter rather than that vCPU's (base/thread.h).
    auto a = std::make_shared<VirtioActivation>(std::move(activation));
    m_thread = start_thread(ThreadKind::DeviceIo, ("net-" + m_options.id).substr(0, 15), [this, a] { run(std::move(*a)); });
    return ok();
}

void VirtioNet::wake() { eventfd_signal(m_control.get()); }

void VirtioNet::reset()
{
    {
        std::lock_guard lock(m_mutex);
        // A driver resets the device before it probes it: whatever activates
        // it next read the MAC presented then, restored or not.
        m_restored = false;
        if (!m_running)
            return;
        m_stop = true;
    }
    wake();
    m_pause_cv.notify_all();
    m_thread.join();
    {
        std::lock_guard lock(m_mutex);
        m_running = false;
        m_stop = false;
        m_parked = false;
        m_signals = nullptr;
        m_negotiated = 0;
    }
    m_pause_cv.notify_all(); // a pause() waiting meanwhile has nothing left to wait for
}

void VirtioNet::pause()
{
    std::unique_lock lock(m_mutex);
    m_pause_requested = true;
    if (!m_running)
        return;
    wake();
    m_pause_cv.wait(lock, [this] { return m_parked || !m_running; });
}

void VirtioNet::resume()
{
    {
        std::lock_guard lock(m_mutex);
        m_pause_requested = false;
    }
    m_pause_cv.notify_all();
}

void VirtioNet::park_if_paused()
{
    if (!m_pause_requested.load())
        return;
    std::unique_lock lock(m_mutex);
    m_parked = true;
    m_pause_cv.notify_all();
    m_pause_cv.wait(lock, [this] { return !m_pause_requested.load() || m_stop.load(); });
    m_parked = false;
}

void VirtioNet::quiet()
{
    std::lock_guard lock(m_mutex);
    m_parked = true;
    m_pause_cv.notify_all();
}

VirtioNet::Snapshot VirtioNet::save_state() const
{
    std::lock_guard lock(m_mutex);
    return Snapshot { m_driver_mac };
}

Status VirtioNet::restore_state(Snapshot const& snapshot)
{
    std::lock_guard lock(m_mutex);
    if (m_running)
        return make_error(ErrorKind::Internal, "virtio-net state restored into an active device");
    if (snapshot.mac[0] & 1)
        return make_error(ErrorKind::BadInput, "virtio-net '" + m_options.id + "': the saved MAC " + format_mac(snapshot.mac) + " is a multicast address");
    m_options.mac = snapshot.mac;
    m_driver_mac = snapshot.mac;
    m_restored = true;
    return ok();
}

Status VirtioNet::set_mac(MacAddress const& mac)
{
    std::lock_guard lock(m_mutex);
    if (mac[0] & 1)
        return make_error(ErrorKind::Usage, "virtio-net '" + m_options.id + "': " + format_mac(mac) + " is a multicast address");
    if (mac == m_options.mac)
        return ok();
    m_options.mac = mac;
    // §5.1.4: the device's configuration changed. Linux reads only the status
    // again (the MAC stays the one it read at probe), but a driver is told.
    if (m_running && m_signals && (m_negotiated & feature::Status))
        m_signals->signal_config_change();
    return ok();
}

void VirtioNet::guest_moved_to(MacAddress const& mac)
{
    std::lock_guard lock(m_mutex);
    m_driver_mac = mac;
}

bool VirtioNet::active() const
{
    std::lock_guard lock(m_mutex);
    return m_running;
}

NetMetrics VirtioNet::metrics() const
{
    auto const& c = m_counters;
    return NetMetrics { c.rx_packets.load(), c.rx_bytes.load(), c.tx_packets.load(), c.tx_bytes.load(), c.rx_dropped.load(),
        c.tx_dropped.load(), c.errors.load(), c.tx_backpressure.load(), c.rx_throttled.load(), c.tx_throttled.load(),
        c.mmds_rx_frames.load(), c.mmds_tx_frames.load(), c.mmds_dropped.load(), c.rx_direct.load() };
}

} // namespace strata::virtio::net
