#include "devices/virtio/pci.h"

#include "devices/virtio/spec.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace strata::virtio {

namespace {

constexpr std::uint8_t VendorCapabilityId = 0x09;
enum class CfgType : std::uint8_t {
    Common = 1, // VIRTIO_PCI_CAP_COMMON_CFG
    Notify = 2, // VIRTIO_PCI_CAP_NOTIFY_CFG
    Isr = 3,    // VIRTIO_PCI_CAP_ISR_CFG
    Device = 4, // VIRTIO_PCI_CAP_DEVICE_CFG
    PciCfg = 5, // VIRTIO_PCI_CAP_PCI_CFG
};
constexpr std::uint16_t VirtioVendor = 0x1af4;
constexpr std::uint16_t ModernDeviceBase = 0x1040;

// struct virtio_pci_cap after cap_vndr/cap_next, with extra trailing bytes.
std::vector<std::byte> virtio_cap(CfgType type, std::uint32_t offset, std::uint32_t length, std::size_t extra = 0)
{
    std::vector<std::byte> body(14 + extra);
    body[0] = std::byte(2 + body.size()); // cap_len counts cap_vndr and cap_next too
    body[1] = std::byte(type);
    body[2] = std::byte { 0 }; // bar
    std::memcpy(&body[6], &offset, 4);
    std::memcpy(&body[10], &length, 4);
    return body;
}

// Mass storage/other for blk, communication/other for the console, network/
// Ethernet for net (as other VMMs present them); unclassified for anything else.
std::uint32_t class_code_for(std::uint32_t id)
{
    if (id == static_cast<std::uint32_t>(DeviceId::Net))
        return 0x020000u;
    if (id == static_cast<std::uint32_t>(DeviceId::Block))
        return 0x018000u;
    if (id == static_cast<std::uint32_t>(DeviceId::Console))
        return 0x078000u;
    return 0xff0000u;
}

} // namespace

Result<std::unique_ptr<PciTransport>> PciTransport::create(VirtioDevice& device, GuestMemory const& mem, MsiSink& msi,
    std::uint64_t bar_address, InterruptLine* intx)
{
    if (bar_address % BarSize != 0)
        return make_error(ErrorKind::Internal, "virtio-pci BAR address is not aligned to its size");
    std::uint16_t const vectors = static_cast<std::uint16_t>(device.num_queues() + 1);
    auto t = std::unique_ptr<PciTransport>(new PciTransport(msi, vectors, intx));
    STRATA_TRY(state, TransportState::create(device, mem, *t));
    t->m_state = std::move(state);
    t->build_config_space(bar_address);
    return t;
}

PciTransport::PciTransport(MsiSink& msi, std::uint16_t vectors, InterruptLine* intx)
    : m_msix(vectors, msi)
    , m_intx(intx)
    , m_queue_vectors(new std::atomic<std::uint16_t>[vectors])
{
    for (std::uint16_t i = 0; i < vectors; ++i)
        m_queue_vectors[i] = NoVector;
}

void PciTransport::build_config_space(std::uint64_t bar_address)
{
    std::uint32_t const id = m_state->device().device_id();
    m_config = std::make_unique<pci::PciConfigSpace>(pci::PciIdentity {
        .vendor = VirtioVendor,
        .device = static_cast<std::uint16_t>(ModernDeviceBase + id),
        .class_code = class_code_for(id),
        .revision = 1,
        .subsystem_vendor = VirtioVendor,
        .subsystem = 0x1100,
        .interrupt_pin = static_cast<std::uint8_t>(m_intx ? 1 : 0),
    });
    m_config->add_bar64(0, BarSize, bar_address);
    m_bar_address_cached = bar_address;

    auto add = [&](std::vector<std::byte> const& body, std::vector<std::byte> const& mask) {
        return m_config->add_capability(VendorCapabilityId, body, mask);
    };
    auto ro = [](std::vector<std::byte> const& body) { return std::vector<std::byte>(body.size()); };
    auto common = virtio_cap(CfgType::Common, CommonOffset, 0x1000);
    add(common, ro(common));
    auto notify = virtio_cap(CfgType::Notify, NotifyOffset, 0x1000, 4);
    std::memcpy(&notify[14], &NotifyMultiplier, 4);
    add(notify, ro(notify));
    auto isr = virtio_cap(CfgType::Isr, IsrOffset, 4);
    add(isr, ro(isr));
    auto dev = virtio_cap(CfgType::Device, DeviceOffset, 0x1000);
    add(dev, ro(dev));
    // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and the data window are writable.
    auto pcicfg = virtio_cap(CfgType::PciCfg, 0, 0, 4);
    std::vector<std::byte> pcicfg_mask(pcicfg.size());
    pcicfg_mask[2] = std::byte { 0xff };
    for (std::size_t i = 6; i < pcicfg.size(); ++i)
        pcicfg_mask[i] = std::byte { 0xff };
    m_pci_cfg_cap = add(pcicfg, pcicfg_mask);
    auto msix = m_msix.capability_body(0, MsixTableOffset, MsixPbaOffset);
    auto msix_mask = pci::MsixTable::capability_mask();
    m_msix_cap = m_config->add_capability(pci::MsixCapabilityId, msix, msix_mask);

    m_config->set_relocation_handler([this](unsigned bar, std::uint64_t old_base, std::uint64_t new_base) {
        if (bar != 0)
            return;
        m_bar_address_cached = new_base;
        if (m_on_relocate)
            m_on_relocate(old_base, new_base);
    });
}

PciTransport::~PciTransport()
{
    if (m_state)
        m_state->device().reset();
}

void PciTransport::set_relocation_handler(std::function<void(std::uint64_t, std::uint64_t)> handler)
{
    std::lock_guard lock(m_mutex);
    m_on_relocate = std::move(handler);
}

std::uint64_t PciTransport::bar_address() const { return m_bar_address_cached; }

std::vector<QueueNotifier> PciTransport::notifiers() const
{
    std::uint64_t const base = bar_address();
    std::vector<QueueNotifier> out;
    for (std::uint16_t q = 0; q < m_state->num_queues(); ++q)
        out.push_back(QueueNotifier { base + NotifyOffset + std::uint64_t(NotifyMultiplier) * q, 2, std::nullopt, q,
            m_state->eventfds().fd(q) });
    return out;
}

void PciTransport::config_read(std::uint64_t offset, std::span<std::byte> data)
{
    std::lock_guard lock(m_mutex);
    m_config->read(offset, data);
    // The PCI_CFG window: an access of exactly `length` bytes at pci_cfg_data
    // reads that many bytes of the BAR at the capability's offset.
    std::uint64_t const window = m_pci_cfg_cap + 16ULL;
    if (offset != window)
        return;
    auto const b = m_config->bytes();
    std::uint32_t bar_offset = 0;
    std::uint32_t length = 0;
    std::memcpy(&bar_offset, &b[m_pci_cfg_cap + 8], 4);
    std::memcpy(&length, &b[m_pci_cfg_cap + 12], 4);
    if (std::to_integer<unsigned>(b[m_pci_cfg_cap + 4]) == 0 && length == data.size()
        && (length == 1 || length == 2 || length == 4) && bar_offset <= BarSize - length)
        bar_read(bar_offset, data);
}

void PciTransport::config_write(std::uint64_t offset, std::span<std::byte const> data)
{
    std::lock_guard lock(m_mutex);
    m_config->write(offset, data);
    auto const b = m_config->bytes();
    std::uint64_t const control_at = m_msix_cap + 2ULL;
    if (offset < control_at + 2 && offset + data.size() > control_at) {
        std::uint16_t control = 0;
        std::memcpy(&control, &b[control_at], 2);
        m_msix.set_control(control);
    }
    std::uint64_t const window = m_pci_cfg_cap + 16ULL;
    if (offset != window)
        return;
    std::uint32_t bar_offset = 0;
    std::uint32_t length = 0;
    std::memcpy(&bar_offset, &b[m_pci_cfg_cap + 8], 4);
    std::memcpy(&length, &b[m_pci_cfg_cap + 12], 4);
    if (std::to_integer<unsigned>(b[m_pci_cfg_cap + 4]) == 0 && length == data.size()
        && (length == 1 || length == 2 || length == 4) && bar_offset <= BarSize - length)
        bar_write(bar_offset, data);
}

void PciTransport::read(std::uint64_t offset, std::span<std::byte> data)
{
    std::lock_guard lock(m_mutex);
    bar_read(offset, data);
}

void PciTransport::write(std::uint64_t offset, std::span<std::byte const> data)
{
    std::lock_guard lock(m_mutex);
    bar_write(offset, data);
}

void PciTransport::bar_read(std::uint64_t offset, std::span<std::byte> data)
{
    std::memset(data.data(), 0, data.size());
    if (offset >= MsixPbaOffset && offset < MsixPbaOffset + 0x1000)
        return m_msix.pba_read(offset - MsixPbaOffset, data);
    if (offset >= MsixTableOffset && offset < MsixTableOffset + 0x1000)
        return m_msix.table_read(offset - MsixTableOffset, data);
    if (offset >= DeviceOffset && offset < DeviceOffset + 0x1000)
        return m_state->device().read_config(offset - DeviceOffset, data);
    if (offset == IsrOffset && !data.empty()) {
        // Reading the ISR acknowledges it (§4.1.4.5).
        data[0] = std::byte(m_isr.exchange(0, std::memory_order_acq_rel) & 0xff);
        return;
    }
    if (offset < CommonOffset + 0x1000)
        common_read(offset - CommonOffset, data);
}

void PciTransport::bar_write(std::uint64_t offset, std::span<std::byte const> data)
{
    if (offset >= MsixTableOffset && offset < MsixTableOffset + 0x1000)
        return m_msix.table_write(offset - MsixTableOffset, data);
    if (offset >= NotifyOffset && offset < NotifyOffset + 0x1000) {
        // The queue is identified by the address (notify_off = queue index).
        std::uint64_t const q = (offset - NotifyOffset) / NotifyMultiplier;
        if (q < m_state->num_queues())
            m_state->eventfds().notify(static_cast<std::uint16_t>(q));
        return;
    }
    if (offset >= DeviceOffset && offset < DeviceOffset + 0x1000)
        return m_state->device().write_config(offset - DeviceOffset, data);
    if (offset < CommonOffset + 0x1000)
        common_write(offset - CommonOffset, data);
}

void PciTransport::raise_intx(std::uint32_t isr_bit)
{
    m_isr.fetch_or(isr_bit, std::memory_order_acq_rel);
    if (m_intx)
        m_intx->trigger();
}

void PciTransport::signal_used(std::uint16_t queue)
{
    if (m_msix.enabled()) {
        std::uint16_t const v = queue < m_state->num_queues() ? m_queue_vectors[queue].load() : NoVector;
        if (v != NoVector)
            m_msix.fire(v);
        return;
    }
    raise_intx(1);
}

void PciTransport::signal_config_change()
{
    m_config_generation.fetch_add(1, std::memory_order_acq_rel);
    if (m_msix.enabled()) {
        std::uint16_t const v = m_config_vector.load();
        if (v != NoVector)
            m_msix.fire(v);
        return;
    }
    raise_intx(2);
}

void PciTransport::set_needs_reset()
{
    m_state->set_needs_reset();
    signal_config_change();
}

void PciTransport::reset_vectors()
{
    m_config_vector = NoVector;
    for (std::uint16_t q = 0; q < m_state->num_queues(); ++q)
        m_queue_vectors[q] = NoVector;
    m_isr.store(0, std::memory_order_release);
}

Result<TransportSnapshot> PciTransport::save_state(PciTransportSnapshot& pci)
{
    std::lock_guard lock(m_mutex);
    STRATA_TRY(snapshot, m_state->save());
    snapshot.interrupt_status = m_isr.load(std::memory_order_acquire);
    snapshot.config_generation = m_config_generation.load(std::memory_order_acquire);
    auto const bytes = m_config->bytes();
    std::copy(bytes.begin(), bytes.end(), pci.config.begin());
    pci.bars = m_config->bar_addresses();
    pci.msix = m_msix.save();
    pci.config_vector = m_config_vector.load();
    pci.queue_vectors.clear();
    for (std::uint16_t q = 0; q < m_state->num_queues(); ++q)
        pci.queue_vectors.push_back(m_queue_vectors[q].load());
    return snapshot;
}

Status PciTransport::restore_state(TransportSnapshot const& snapshot, PciTransportSnapshot const& pci)
{
    std::lock_guard lock(m_mutex);
    std::string const what = "virtio-pci device " + std::to_string(m_state->device().device_id());
    if (pci.msix.vectors.size() != m_msix.size())
        return make_error(ErrorKind::BadInput, what + ": the snapshot has " + std::to_string(pci.msix.vectors.size())
                + " MSI-X vectors, the function " + std::to_string(m_msix.size()));
    if (pci.queue_vectors.size() != m_state->num_queues())
        return make_error(ErrorKind::BadInput, what + ": the snapshot has vectors for " + std::to_string(pci.queue_vectors.size())
                + " queues, the device " + std::to_string(m_state->num_queues()));
    std::uint16_t const vectors = m_msix.size();
    auto vector = [&](std::uint16_t v) { return v < vectors ? v : NoVector; };

    m_config->restore(pci.config, pci.bars);
    std::uint64_t const attached = m_bar_address_cached.load();
    std::uint64_t const saved = m_config->bar_address(0);
    if (saved != attached) {
        m_bar_address_cached = saved;
        if (m_on_relocate)
            m_on_relocate(attached, saved);
    }
    // MSI-X enable and function mask as the restored Message Control says, so
    // the table and the configuration space cannot disagree.
    auto const b = m_config->bytes();
    std::uint16_t control = 0;
    std::memcpy(&control, &b[m_msix_cap + 2ULL], 2);
    pci::MsixSnapshot msix = pci.msix;
    msix.enabled = (control & pci::MsixControlEnable) != 0;
    msix.function_mask = (control & pci::MsixControlFunctionMask) != 0;
    if (!m_msix.restore(msix))
        return make_error(ErrorKind::Internal, what + ": MSI-X table not restored");
    m_config_vector = vector(pci.config_vector);
    for (std::uint16_t q = 0; q < m_state->num_queues(); ++q)
        m_queue_vectors[q] = vector(pci.queue_vectors[q]);
    m_isr.store(snapshot.interrupt_status & 3u, std::memory_order_release);
    m_config_generation.store(static_cast<std::uint8_t>(snapshot.config_generation), std::memory_order_release);
    return m_state->restore(snapshot);
}

} // namespace strata::virtio
