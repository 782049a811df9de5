#include "devices/virtio/mmio.h"

#include "devices/virtio/spec.h"

#include <cstring>
#include <sstream>

namespace strata::virtio {

namespace {

enum class Reg : std::uint64_t {
    MagicValue = 0x000,        // r   MagicValue
    Version = 0x004,           // r   Version
    DeviceId = 0x008,          // r   DeviceID
    VendorId = 0x00c,          // r   VendorID
    DeviceFeatures = 0x010,    // r   DeviceFeatures
    DeviceFeaturesSel = 0x014, // w   DeviceFeaturesSel
    DriverFeatures = 0x020,    // w   DriverFeatures
    DriverFeaturesSel = 0x024, // w   DriverFeaturesSel
    QueueSel = 0x030,          // w   QueueSel
    QueueNumMax = 0x034,       // r   QueueNumMax
    QueueNum = 0x038,          // w   QueueNum
    QueueReady = 0x044,        // rw  QueueReady
    QueueNotify = 0x050,       // w   QueueNotify
    InterruptStatus = 0x060,   // r   InterruptStatus
    InterruptAck = 0x064,      // w   InterruptACK
    Status = 0x070,            // rw  Status
    QueueDescLow = 0x080,      // w   QueueDescLow
    QueueDescHigh = 0x084,     // w   QueueDescHigh
    QueueDriverLow = 0x090,    // w   QueueDriverLow
    QueueDriverHigh = 0x094,   // w   QueueDriverHigh
    QueueDeviceLow = 0x0a0,    // w   QueueDeviceLow
    QueueDeviceHigh = 0x0a4,   // w   QueueDeviceHigh
    ShmSel = 0x0ac,            // w   SHMSel
    ShmLenLow = 0x0b0,         // r   SHMLenLow
    ShmLenHigh = 0x0b4,        // r   SHMLenHigh
    ShmBaseLow = 0x0b8,        // r   SHMBaseLow
    ShmBaseHigh = 0x0bc,       // r   SHMBaseHigh
    ConfigGeneration = 0x0fc,  // r   ConfigGeneration
};

constexpr std::uint64_t ConfigOffset = 0x100;
constexpr std::uint32_t Magic = 0x74726976; // "virt"
constexpr std::uint32_t VendorStrata = 0x53545241; // "STRA"; drivers do not check it

void set_low(std::uint64_t& field, std::uint32_t v) { field = (field & ~0xffffffffULL) | v; }
void set_high(std::uint64_t& field, std::uint32_t v) { field = (field & 0xffffffffULL) | (std::uint64_t(v) << 32); }

} // namespace

Result<std::unique_ptr<MmioTransport>> MmioTransport::create(VirtioDevice& device, GuestMemory const& mem,
    InterruptLine& interrupt, std::uint64_t base, std::uint32_t irq)
{
    auto t = std::unique_ptr<MmioTransport>(new MmioTransport(interrupt, base, irq));
    STRATA_TRY(state, TransportState::create(device, mem, *t));
    t->m_state = std::move(state);
    return t;
}

MmioTransport::~MmioTransport()
{
    if (m_state)
        m_state->device().reset();
}

void MmioTransport::read(std::uint64_t offset, std::span<std::byte> data)
{
    std::lock_guard lock(m_mutex);
    if (offset >= ConfigOffset) {
        m_state->device().read_config(offset - ConfigOffset, data);
        return;
    }
    std::memset(data.data(), 0, data.size());
    // Registers are 32 bits wide and accessed as such (§4.2.2.2); anything else
    // reads as zero.
    if (data.size() != 4 || offset % 4 != 0)
        return;
    std::uint32_t const v = read_register(offset);
    std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(std::uint64_t offset, std::span<std::byte const> data)
{
    std::lock_guard lock(m_mutex);
    if (offset >= ConfigOffset) {
        m_state->device().write_config(offset - ConfigOffset, data);
        return;
    }
    if (data.size() != 4 || offset % 4 != 0)
        return;
    std::uint32_t v = 0;
    std::memcpy(&v, data.data(), 4);
    write_register(offset, v);
}

std::uint32_t MmioTransport::read_register(std::uint64_t offset)
{
    TransportState& s = *m_state;
    QueueConfig const* q = s.selected_queue();
    switch (static_cast<Reg>(offset)) {
    case Reg::MagicValue: return Magic;
    case Reg::Version: return 2;
    case Reg::DeviceId: return s.device().device_id();
    case Reg::VendorId: return VendorStrata;
    case Reg::DeviceFeatures: return s.device_features_word();
    case Reg::QueueNumMax: return q ? s.device().max_queue_size() : 0;
    case Reg::QueueReady: return q && q->ready ? 1 : 0;
    case Reg::InterruptStatus: return m_interrupt_status.load(std::memory_order_acquire);
    case Reg::Status: return s.status();
    case Reg::ShmLenLow:
    case Reg::ShmLenHigh:
    case Reg::ShmBaseLow:
    case Reg::ShmBaseHigh: return 0xffffffff; // no shared memory regions
    case Reg::ConfigGeneration: return m_config_generation.load(std::memory_order_acquire);
    default: return 0;
    }
}

void MmioTransport::write_register(std::uint64_t offset, std::uint32_t v)
{
    TransportState& s = *m_state;
    QueueConfig* q = s.writable_queue();
    switch (static_cast<Reg>(offset)) {
    case Reg::DeviceFeaturesSel: s.select_device_features(v); break;
    case Reg::DriverFeatures: s.write_driver_features_word(v); break;
    case Reg::DriverFeaturesSel: s.select_driver_features(v); break;
    case Reg::QueueSel: s.select_queue(static_cast<std::uint16_t>(v > 0xffff ? 0xffff : v)); break;
    case Reg::QueueNum:
        if (q)
            q->size = static_cast<std::uint16_t>(v > 0xffff ? 0 : v);
        break;
    case Reg::QueueReady:
        if (q)
            q->ready = (v & 1) != 0;
        break;
    case Reg::QueueNotify:
        if (v <= 0xffff)
            s.eventfds().notify(static_cast<std::uint16_t>(v));
        break;
    case Reg::InterruptAck: m_interrupt_status.fetch_and(~v, std::memory_order_acq_rel); break;
    case Reg::Status:
        if (s.write_status(static_cast<std::uint8_t>(v)))
            m_interrupt_status.store(0, std::memory_order_release);
        break;
    case Reg::QueueDescLow: if (q) set_low(q->desc, v); break;
    case Reg::QueueDescHigh: if (q) set_high(q->desc, v); break;
    case Reg::QueueDriverLow: if (q) set_low(q->driver, v); break;
    case Reg::QueueDriverHigh: if (q) set_high(q->driver, v); break;
    case Reg::QueueDeviceLow: if (q) set_low(q->device, v); break;
    case Reg::QueueDeviceHigh: if (q) set_high(q->device, v); break;
    default: break; // read-only or unknown registers ignore writes
    }
}

void MmioTransport::signal_used(std::uint16_t)
{
    m_interrupt_status.fetch_or(1, std::memory_order_acq_rel);
    m_interrupt.trigger();
}

void MmioTransport::signal_config_change()
{
    m_config_generation.fetch_add(1, std::memory_order_acq_rel);
    m_interrupt_status.fetch_or(2, std::memory_order_acq_rel);
    m_interrupt.trigger();
}

void MmioTransport::set_needs_reset()
{
    m_state->set_needs_reset();
    m_interrupt_status.fetch_or(2, std::memory_order_acq_rel);
    m_interrupt.trigger();
}

Result<TransportSnapshot> MmioTransport::save_state()
{
    std::lock_guard lock(m_mutex);
    STRATA_TRY(snapshot, m_state->save());
    snapshot.interrupt_status = m_interrupt_status.load(std::memory_order_acquire);
    snapshot.config_generation = m_config_generation.load(std::memory_order_acquire);
    return snapshot;
}

Status MmioTransport::restore_state(TransportSnapshot const& snapshot)
{
    std::lock_guard lock(m_mutex);
    STRATA_TRY(m_state->restore(snapshot));
    m_interrupt_status.store(snapshot.interrupt_status, std::memory_order_release);
    m_config_generation.store(snapshot.config_generation, std::memory_order_release);
    return ok();
}

std::vector<QueueNotifier> MmioTransport::notifiers() const
{
    std::vector<QueueNotifier> out;
    for (std::uint16_t q = 0; q < m_state->num_queues(); ++q)
        out.push_back(QueueNotifier { m_base + static_cast<std::uint64_t>(Reg::QueueNotify), 4, q, q, m_state->eventfds().fd(q) });
    return out;
}

std::string MmioTransport::cmdline_entry() const
{
    std::ostringstream out;
    out << "virtio_mmio.device=" << Size << "@0x" << std::hex << m_base << std::dec << ":" << m_irq;
    return out.str();
}

} // namespace strata::virtio
