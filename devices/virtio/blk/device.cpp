#include "devices/virtio/blk/device.h"
#include "base/thread.h"

#include "devices/virtio/spec.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata::virtio::blk {

Result<std::unique_ptr<VirtioBlk>> VirtioBlk::create(BlockBackend& backend, BlkOptions options)
{
    if (options.id.size() > IdBytes)
        return make_error(ErrorKind::Usage, "virtio-blk id '" + options.id + "' is longer than 20 bytes");
    if (options.num_queues == 0)
        return make_error(ErrorKind::Usage, "virtio-blk needs at least one queue");
    if (options.queue_size == 0 || !std::has_single_bit(options.queue_size) || options.queue_size > MaxQueueSize)
        return make_error(ErrorKind::Usage, "virtio-blk queue size must be a power of 2 up to 32768");
    if (options.blk_size < SectorSize || !std::has_single_bit(options.blk_size))
        return make_error(ErrorKind::Usage, "virtio-blk block size must be a power of 2 of at least 512");
    if (backend.size() % SectorSize != 0)
        return make_error(ErrorKind::BadInput, "disk size is not a multiple of 512 bytes");
    if (options.seg_max == 0)
        options.seg_max = std::max(1u, options.queue_size - 2u);
    // Each discard or write-zeroes range is one backend operation, and a request
    // is submitted whole or not at all: advertise no more ranges than the backend
    // takes at once, or such a request could never start.
    unsigned const depth = std::max(1u, backend.queue_depth());
    options.max_discard_seg = std::min(options.max_discard_seg, depth);
    options.max_write_zeroes_seg = std::min(options.max_write_zeroes_seg, depth);
    // The used length of a read is data_len + 1, a 32-bit field: seg_max *
    // size_max must leave room for it.
    if (std::uint64_t(options.seg_max) * options.size_max >= std::numeric_limits<std::uint32_t>::max())
        options.seg_max = static_cast<std::uint32_t>((std::numeric_limits<std::uint32_t>::max() - 1) / options.size_max);
    options.read_only = options.read_only || backend.read_only();

    auto device = std::unique_ptr<VirtioBlk>(new VirtioBlk(backend, std::move(options)));
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return errno_error("eventfd for virtio-blk control");
    device->m_control = Fd(fd);
    return device;
}

VirtioBlk::VirtioBlk(BlockBackend& backend, BlkOptions options)
    : m_backend(backend)
    , m_options(std::move(options))
    , m_log("strata: virtio-blk '" + m_options.id + "'")
    , m_limiter(m_options.rate_limiter ? m_options.rate_limiter : std::make_shared<RateLimiter>(RateLimiterConfig {}))
{
    m_features = virtio::feature::Version1 | virtio::feature::RingIndirectDesc | virtio::feature::RingEventIdx
        | feature::SizeMax | feature::SegMax | feature::BlkSize | feature::Flush;
    if (m_options.read_only)
        m_features |= feature::Ro;
    if (m_options.num_queues > 1)
        m_features |= feature::Mq;
    if (m_options.discard)
        m_features |= feature::Discard;
    if (m_options.write_zeroes)
        m_features |= feature::WriteZeroes;

    m_config.capacity = backend.size() / SectorSize;
    m_config.size_max = m_options.size_max;
    m_config.seg_max = m_options.seg_max;
    m_config.blk_size = m_options.blk_size;
    m_config.num_queues = m_options.num_queues;
    m_config.max_discard_sectors = m_options.max_discard_sectors;
    m_config.max_discard_seg = m_options.max_discard_seg;
    m_config.discard_sector_alignment = m_options.blk_size / static_cast<std::uint32_t>(SectorSize);
    m_config.max_write_zeroes_sectors = m_options.max_write_zeroes_sectors;
    m_config.max_write_zeroes_seg = m_options.max_write_zeroes_seg;
    m_config.write_zeroes_may_unmap = 1;
}

VirtioBlk::~VirtioBlk() { reset(); }

std::uint32_t VirtioBlk::device_id() const { return static_cast<std::uint32_t>(DeviceId::Block); }

void VirtioBlk::read_config(std::uint64_t offset, std::span<std::byte> data) const
{
    std::memset(data.data(), 0, data.size());
    if (offset >= sizeof m_config)
        return;
    std::size_t const n = std::min<std::size_t>(data.size(), sizeof m_config - offset);
    // SAFETY: reading the bytes of a trivially copyable struct for the driver.
    std::memcpy(data.data(), reinterpret_cast<std::byte const*>(&m_config) + offset, n);
}

void VirtioBlk::write_config(std::uint64_t, std::span<std::byte const>)
{
    // Only `writeback` is writable in the spec, and only with CONFIG_WCE, which is
    // not offered: every write is ignored.
}

Status VirtioBlk::activate(VirtioActivation activation)
{
    std::vector<std::optional<Virtqueue>> queues;
    for (std::size_t i = 0; i < activation.queues.size(); ++i) {
        auto const& cfg = activation.queues[i];
        if (!cfg.ready) {
            queues.emplace_back();
            continue;
        }
        STRATA_TRY(q, Virtqueue::create(*activation.mem, cfg, m_options.queue_size, activation.features));
        if (i < activation.start_indices.size())
            q.resume_at(activation.start_indices[i]);
        queues.emplace_back(std::move(q));
    }
    BlkLimits limits;
    limits.capacity = m_config.capacity;
    limits.read_only = m_options.read_only;
    limits.seg_max = m_options.seg_max;
    limits.size_max = m_options.size_max;
    limits.discard = m_options.discard && (activation.features & feature::Discard);
    limits.max_discard_sectors = m_options.max_discard_sectors;
    limits.max_discard_seg = m_options.max_discard_seg;
    limits.write_zeroes = m_options.write_zeroes && (activation.features & feature::WriteZeroes);
    limits.max_write_zeroes_sectors = m_options.max_write_zeroes_sectors;
    limits.max_write_zeroes_seg = m_options.max_write_zeroes_seg;

    std::lock_guard lock(m_mutex);
    if (m_running)
        return make_error(ErrorKind::Internal, "virtio-blk activated twice without a reset");
    auto engine = std::make_unique<BlkEngine>(m_backend, *activation.mem, limits, m_options.id, std::move(queues),
        *activation.signals, m_counters, m_log, *m_limiter);
    m_stop = false;
    m_paused = false;
    m_running = true;
    // std::function needs a copyable callable: the engine and activation travel in shared_ptrs.
    auto e = std::shared_ptr<BlkEngine>(std::move(engine));
    auto a = std::make_shared<VirtioActivation>(std::move(activation));
    m_thread = start_thread(ThreadKind::DeviceIo, ("blk-" + m_options.id).substr(0, 15), [this, e, a] { run(*e, std::move(*a)); });
    return ok();
}

void VirtioBlk::wake()
{
    eventfd_signal(m_control.get());
}

void VirtioBlk::reset()
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
    m_paused = false;
    m_cv.notify_all();
}

bool VirtioBlk::active() const
{
    std::lock_guard lock(m_mutex);
    return m_running;
}

void VirtioBlk::request_pause()
{
    {
        std::lock_guard lock(m_mutex);
        m_pause_requested = true;
    }
    wake();
}

void VirtioBlk::wait_paused()
{
    std::unique_lock lock(m_mutex);
    m_cv.wait(lock, [this] { return !m_pause_requested || m_paused || !m_running; });
}

bool VirtioBlk::wait_paused_until(std::chrono::steady_clock::time_point deadline)
{
    std::unique_lock lock(m_mutex);
    return m_cv.wait_until(lock, deadline, [this] { return !m_pause_requested || m_paused || !m_running; });
}

void VirtioBlk::pause()
{
    request_pause();
    wait_paused();
}

void VirtioBlk::resume()
{
    {
        std::lock_guard lock(m_mutex);
        m_pause_requested = false;
    }
    wake();
}

void VirtioBlk::set_rate_limit(RateLimiterConfig const& config)
{
    m_limiter->update(config);
    // Requests waiting on the old limit's timer are looked at again now.
    wake();
}

BlkMetrics VirtioBlk::metrics() const
{
    auto const& c = m_counters;
    return BlkMetrics { c.requests.load(), c.read_requests.load(), c.write_requests.load(), c.flush_requests.load(),
        c.discard_requests.load(), c.write_zeroes_requests.load(), c.bytes_read.load(), c.bytes_written.load(),
        c.errors.load(), c.rejected.load(), c.backpressure.load(), c.throttled.load() };
}

} // namespace strata::virtio::blk
