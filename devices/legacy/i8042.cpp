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

I8042::I8042(std::function<void()> on_reset, std::function<void()> raise_kbd_irq)
    : m_on_reset(std::move(on_reset))
    , m_raise_kbd_irq(std::move(raise_kbd_irq))
{
}

void I8042::press_ctrl_alt_del()
{
    {
        std::lock_guard guard(m_lock);
        // Ctrl, Alt, Del down (0x1d, 0x38, 0xe0 0x53), then up (| 0x80).
        static constexpr std::uint8_t codes[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
        for (std::uint8_t code : codes)
            m_keys.push_back(code);
        if (m_output)
            return;
        m_output = m_keys.front();
        m_keys.pop_front();
    }
    if (m_raise_kbd_irq)
        m_raise_kbd_irq();
}

void I8042::read(std::uint64_t offset, std::span<std::byte> data)
{
    if (data.empty())
        return;
    std::uint8_t value = 0;
    bool more = false;
    {
        std::lock_guard guard(m_lock);
        if (offset == 0) {
            value = m_output.value_or(0);
            m_output.reset();
            if (!m_keys.empty()) {
                m_output = m_keys.front();
                m_keys.pop_front();
                more = true;
            }
        } else if (offset == 4) {
            value = static_cast<std::uint8_t>(status_system | (m_output ? status_output_full : 0));
        }
    }
    data[0] = static_cast<std::byte>(value);
    if (more && m_raise_kbd_irq)
        m_raise_kbd_irq();
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

namespace strata {

I8042State I8042::save_state()
{
    std::lock_guard guard(m_lock);
    return I8042State { m_output, m_command_byte, m_pending_command, std::vector<std::uint8_t>(m_keys.begin(), m_keys.end()) };
}

void I8042::restore_state(I8042State const& state)
{
    std::lock_guard guard(m_lock);
    m_output = state.output;
    m_command_byte = state.command_byte;
    m_pending_command = state.pending_command;
    m_keys.assign(state.keys.begin(), state.keys.end());
}

} // namespace strata
