// The virtio-pci common configuration structure (virtio 1.2 §4.1.4.3) of
// PciTransport: reads build the structure from the transport state; writes are
// merged into it and each field the write touched is applied, so any access width
// the driver uses (8/16/32-bit fields, 64-bit addresses as two 32-bit halves or
// one 64-bit access) behaves the same.
#include "devices/virtio/pci.h"

#include <array>
#include <cstring>

namespace strata::virtio {

namespace {

enum class Field : std::uint64_t {
    DeviceFeatureSelect = 0x00, // rw  device_feature_select
    DeviceFeature = 0x04,       // r   device_feature
    DriverFeatureSelect = 0x08, // rw  driver_feature_select
    DriverFeature = 0x0c,       // rw  driver_feature
    ConfigMsixVector = 0x10,    // rw  config_msix_vector
    NumQueues = 0x12,           // r   num_queues
    DeviceStatus = 0x14,        // rw  device_status
    ConfigGeneration = 0x15,    // r   config_generation
    QueueSelect = 0x16,         // rw  queue_select
    QueueSize = 0x18,           // rw  queue_size
    QueueMsixVector = 0x1a,     // rw  queue_msix_vector
    QueueEnable = 0x1c,         // rw  queue_enable
    QueueNotifyOff = 0x1e,      // r   queue_notify_off
    QueueDesc = 0x20,           // rw  queue_desc
    QueueDriver = 0x28,         // rw  queue_driver
    QueueDevice = 0x30,         // rw  queue_device
    QueueNotifyData = 0x38,     // r   queue_notify_data (not offered)
    QueueReset = 0x3a,          // rw  queue_reset (not offered)
};

struct FieldInfo {
    Field field;
    std::uint64_t size;
};

constexpr std::array<FieldInfo, 18> Fields { {
    { Field::DeviceFeatureSelect, 4 }, { Field::DeviceFeature, 4 }, { Field::DriverFeatureSelect, 4 },
    { Field::DriverFeature, 4 }, { Field::ConfigMsixVector, 2 }, { Field::NumQueues, 2 }, { Field::DeviceStatus, 1 },
    { Field::ConfigGeneration, 1 }, { Field::QueueSelect, 2 }, { Field::QueueSize, 2 }, { Field::QueueMsixVector, 2 },
    { Field::QueueEnable, 2 }, { Field::QueueNotifyOff, 2 }, { Field::QueueDesc, 8 }, { Field::QueueDriver, 8 },
    { Field::QueueDevice, 8 }, { Field::QueueNotifyData, 2 }, { Field::QueueReset, 2 },
} };

constexpr std::size_t CommonSize = 0x3c;

template<typename T>
void put(std::array<std::byte, 0x40>& s, Field f, T value)
{
    std::memcpy(&s[static_cast<std::size_t>(f)], &value, sizeof value);
}

} // namespace

void PciTransport::common_read(std::uint64_t offset, std::span<std::byte> data)
{
    std::memset(data.data(), 0, data.size());
    if (offset >= CommonSize)
        return;
    TransportState const& st = *m_state;
    QueueConfig const* q = st.selected_queue();
    std::array<std::byte, 0x40> s {};
    put<std::uint32_t>(s, Field::DeviceFeatureSelect, st.device_features_sel());
    put<std::uint32_t>(s, Field::DeviceFeature, st.device_features_word());
    put<std::uint32_t>(s, Field::DriverFeatureSelect, st.driver_features_sel());
    put<std::uint32_t>(s, Field::DriverFeature, st.driver_features_word());
    put<std::uint16_t>(s, Field::ConfigMsixVector, m_config_vector.load());
    put<std::uint16_t>(s, Field::NumQueues, st.num_queues());
    put<std::uint8_t>(s, Field::DeviceStatus, st.status());
    put<std::uint8_t>(s, Field::ConfigGeneration, m_config_generation.load());
    put<std::uint16_t>(s, Field::QueueSelect, st.queue_sel());
    if (q) {
        put<std::uint16_t>(s, Field::QueueSize, q->size);
        put<std::uint16_t>(s, Field::QueueMsixVector, m_queue_vectors[st.queue_sel()].load());
        put<std::uint16_t>(s, Field::QueueEnable, q->ready ? 1 : 0);
        put<std::uint16_t>(s, Field::QueueNotifyOff, st.queue_sel());
        put<std::uint64_t>(s, Field::QueueDesc, q->desc);
        put<std::uint64_t>(s, Field::QueueDriver, q->driver);
        put<std::uint64_t>(s, Field::QueueDevice, q->device);
    }
    std::size_t const n = std::min<std::size_t>(data.size(), CommonSize - offset);
    std::memcpy(data.data(), &s[offset], n);
}

void PciTransport::common_write(std::uint64_t offset, std::span<std::byte const> data)
{
    if (offset >= CommonSize || data.size() > CommonSize - offset)
        return;
    std::array<std::byte, 0x40> s {};
    common_read(0, std::span(s).first(CommonSize));
    std::memcpy(&s[offset], data.data(), data.size());
    for (auto const& f : Fields) {
        auto const at = static_cast<std::uint64_t>(f.field);
        if (at + f.size <= offset || at >= offset + data.size())
            continue;
        std::uint64_t value = 0;
        std::memcpy(&value, &s[at], f.size);
        apply_common_field(at, value);
    }
}

void PciTransport::apply_common_field(std::uint64_t at, std::uint64_t value)
{
    TransportState& st = *m_state;
    QueueConfig* q = st.writable_queue();
    std::uint16_t const vectors = m_msix.size();
    auto vector = [&](std::uint64_t v) { return v < vectors ? static_cast<std::uint16_t>(v) : NoVector; };
    auto const v32 = static_cast<std::uint32_t>(value);
    switch (static_cast<Field>(at)) {
    case Field::DeviceFeatureSelect: st.select_device_features(v32); break;
    case Field::DriverFeatureSelect: st.select_driver_features(v32); break;
    case Field::DriverFeature: st.write_driver_features_word(v32); break;
    case Field::ConfigMsixVector: m_config_vector = vector(value); break;
    case Field::DeviceStatus:
        if (st.write_status(static_cast<std::uint8_t>(value)))
            reset_vectors();
        break;
    case Field::QueueSelect: st.select_queue(static_cast<std::uint16_t>(value)); break;
    case Field::QueueSize:
        if (q)
            q->size = static_cast<std::uint16_t>(value);
        break;
    case Field::QueueMsixVector:
        if (st.selected_queue())
            m_queue_vectors[st.queue_sel()] = vector(value);
        break;
    case Field::QueueEnable:
        // Only 1 may be written (§4.1.4.3.2); disabling needs queue_reset.
        if (q && value == 1)
            q->ready = true;
        break;
    case Field::QueueDesc:
        if (q)
            q->desc = value;
        break;
    case Field::QueueDriver:
        if (q)
            q->driver = value;
        break;
    case Field::QueueDevice:
        if (q)
            q->device = value;
        break;
    default: break; // read-only fields
    }
}

} // namespace strata::virtio
