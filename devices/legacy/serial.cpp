#include "devices/legacy/serial.h"

#include <algorithm>
#include <cerrno>
#include <unistd.h>

namespace strata {

namespace {
constexpr std::uint8_t ier_rx_data = 0x01;
constexpr std::uint8_t ier_thr_empty = 0x02;
constexpr std::uint8_t lcr_dlab = 0x80;
constexpr std::uint8_t mcr_loop = 0x10;
constexpr std::uint8_t lsr_data_ready = 0x01;
constexpr std::uint8_t lsr_thr_empty = 0x20;
constexpr std::uint8_t lsr_idle = 0x40;
constexpr std::uint8_t iir_none = 0x01;
constexpr std::uint8_t iir_thr_empty = 0x02;
constexpr std::uint8_t iir_rx_data = 0x04;
constexpr std::uint8_t iir_fifo_enabled = 0xc0;
} // namespace

Serial::Serial(int output_fd, std::function<void()> raise_irq)
    : m_output_fd(output_fd)
    , m_raise_irq(std::move(raise_irq))
{
}

bool Serial::interrupt_pending() const
{
    return ((m_ier & ier_rx_data) && !m_input.empty()) || ((m_ier & ier_thr_empty) && m_thr_empty_pending);
}

void Serial::read(std::uint64_t offset, std::span<std::byte> data)
{
    if (data.empty())
        return;
    std::uint8_t value;
    {
        std::lock_guard guard(m_lock);
        value = offset < 8 ? read_reg(static_cast<std::uint8_t>(offset)) : 0xff;
    }
    data[0] = static_cast<std::byte>(value);
    for (std::size_t i = 1; i < data.size(); ++i)
        data[i] = std::byte { 0 };
}

void Serial::write(std::uint64_t offset, std::span<std::byte const> data)
{
    if (data.empty() || offset >= 8)
        return;
    bool raise;
    {
        std::lock_guard guard(m_lock);
        raise = write_reg(static_cast<std::uint8_t>(offset), static_cast<std::uint8_t>(data[0]));
    }
    if (raise && m_raise_irq)
        m_raise_irq();
}

std::uint8_t Serial::read_reg(std::uint8_t reg)
{
    bool dlab = m_lcr & lcr_dlab;
    switch (reg) {
    case Data: {
        if (dlab)
            return m_dll;
        if (m_input.empty())
            return 0;
        std::uint8_t byte = m_input.front();
        m_input.pop_front();
        return byte;
    }
    case InterruptEnable:
        return dlab ? m_dlm : m_ier;
    case InterruptId: {
        std::uint8_t iir = iir_none;
        if ((m_ier & ier_rx_data) && !m_input.empty()) {
            iir = iir_rx_data;
        } else if ((m_ier & ier_thr_empty) && m_thr_empty_pending) {
            iir = iir_thr_empty;
            // Reading IIR while it reports THR-empty clears that interrupt.
            m_thr_empty_pending = false;
        }
        return static_cast<std::uint8_t>(iir | iir_fifo_enabled);
    }
    case LineControl:
        return m_lcr;
    case ModemControl:
        return m_mcr;
    case LineStatus:
        return static_cast<std::uint8_t>(lsr_thr_empty | lsr_idle | (m_input.empty() ? 0 : lsr_data_ready));
    case ModemStatus:
        // In loopback the modem inputs follow MCR; otherwise report DCD, DSR, CTS.
        if (m_mcr & mcr_loop)
            return static_cast<std::uint8_t>(((m_mcr & 0x02) ? 0x10 : 0) | ((m_mcr & 0x01) ? 0x20 : 0)
                | ((m_mcr & 0x04) ? 0x40 : 0) | ((m_mcr & 0x08) ? 0x80 : 0));
        return 0xb0;
    case Scratch:
        return m_scr;
    default:
        return 0xff;
    }
}

bool Serial::write_reg(std::uint8_t reg, std::uint8_t value)
{
    bool dlab = m_lcr & lcr_dlab;
    switch (reg) {
    case Data:
        if (dlab) {
            m_dll = value;
            return false;
        }
        if (m_mcr & mcr_loop) {
            if (m_input.size() < input_capacity)
                m_input.push_back(value);
        } else if (m_output_fd >= 0) {
            ssize_t n;
            do {
                n = ::write(m_output_fd, &value, 1);
            } while (n < 0 && errno == EINTR);
            // A closed or full output (EPIPE, EAGAIN) drops the byte: the guest
            // must not stall because nobody reads its console.
        }
        m_thr_empty_pending = true;
        return interrupt_pending();
    case InterruptEnable: {
        if (dlab) {
            m_dlm = value;
            return false;
        }
        bool was_thr = m_ier & ier_thr_empty;
        m_ier = value & 0x0f;
        // Enabling the THR-empty interrupt fires it at once, as the transmitter is idle.
        if (!was_thr && (m_ier & ier_thr_empty))
            m_thr_empty_pending = true;
        return interrupt_pending();
    }
    case InterruptId:
        return false; // FCR: the FIFOs are always on
    case LineControl:
        m_lcr = value;
        return false;
    case ModemControl:
        m_mcr = value & 0x1f;
        return false;
    case Scratch:
        m_scr = value;
        return false;
    default:
        return false;
    }
}

std::size_t Serial::queue_input(std::span<std::byte const> bytes)
{
    std::size_t taken = 0;
    bool raise;
    {
        std::lock_guard guard(m_lock);
        while (taken < bytes.size() && m_input.size() < input_capacity)
            m_input.push_back(static_cast<std::uint8_t>(bytes[taken++]));
        raise = taken > 0 && interrupt_pending();
    }
    if (raise && m_raise_irq)
        m_raise_irq();
    return taken;
}

bool Serial::wants_input() const
{
    std::lock_guard guard(m_lock);
    return m_input.size() < input_capacity;
}

} // namespace strata

namespace strata {

SerialState Serial::save_state() const
{
    std::lock_guard guard(m_lock);
    return SerialState { m_ier, m_lcr, m_mcr, m_scr, m_dll, m_dlm, m_thr_empty_pending,
        std::vector<std::uint8_t>(m_input.begin(), m_input.end()) };
}

void Serial::restore_state(SerialState const& state)
{
    std::lock_guard guard(m_lock);
    m_ier = state.ier;
    m_lcr = state.lcr;
    m_mcr = state.mcr;
    m_scr = state.scr;
    m_dll = state.dll;
    m_dlm = state.dlm;
    m_thr_empty_pending = state.thr_empty_pending;
    auto const n = std::min(state.input.size(), input_capacity);
    m_input.assign(state.input.begin(), state.input.begin() + static_cast<std::ptrdiff_t>(n));
}

} // namespace strata
