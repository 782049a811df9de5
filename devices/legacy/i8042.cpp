#include "devices/legacy/i8042.h"

namespace strata {

namespace {
constexpr std::uint8_t status_output_full = 0x01;
constexpr std::uint8_t status_system = 0x04;
constexpr std::uint8_t cmd_read_command_byte = 0x20;
constexpr std::uint8_t cmd_write_command_byte = 0x60;
constexpr std::uint8_t cmd_self_test = 0xaa;
constexpr std::uint8_t cmd_interface_test = 0xab;
constexpr std::uint8_t cmd_pulse_reset = 0xfe;
} // namespace

I8042::I8042(std::function<void()> on_reset)
    : m_on_reset(std::move(on_reset))
{
}

void I8042::read(std::uint64_t offset, std::span<std::byte> data)
{
    if (data.empty())
        return;
    std::uint8_t value = 0;
    {
        std::lock_guard guard(m_lock);
        if (offset == 0) {
            value = m_output.value_or(0);
            m_output.reset();
        } else if (offset == 4) {
            value = static_cast<std::uint8_t>(status_system | (m_output ? status_output_full : 0));
        }
    }
    data[0] = static_cast<std::byte>(value);
}

void I8042::write(std::uint64_t offset, std::span<std::byte const> data)
{
    if (data.empty())
        return;
    auto value = static_cast<std::uint8_t>(data[0]);
    bool reset = false;
    {
        std::lock_guard guard(m_lock);
        if (offset == 0) {
            if (m_pending_command == cmd_write_command_byte)
                m_command_byte = value;
            m_pending_command.reset();
        } else if (offset == 4) {
            switch (value) {
            case cmd_read_command_byte: m_output = m_command_byte; break;
            case cmd_write_command_byte: m_pending_command = value; break;
            case cmd_self_test: m_output = 0x55; break;
            case cmd_interface_test: m_output = 0x00; break;
            case cmd_pulse_reset: reset = true; break;
            default: break;
            }
        }
    }
    if (reset && m_on_reset)
        m_on_reset();
}

} // namespace strata
