// A 16550A UART (the PC's COM1) as a port-I/O BusDevice: transmit goes to a host
// file descriptor, receive comes from bytes the VMM queues, and the receive-data
// and transmit-empty interrupts go to the guest through a callback.
// Reference: National Semiconductor PC16550D datasheet. Not implemented: the
// FIFO trigger levels (the receive FIFO is unbounded-ish, capped at 4 KiB, and
// reports data as soon as one byte is waiting), modem-status changes, break.
// Threading: vCPU threads call read/write and the input thread calls
// queue_input; a mutex serializes them. The output fd is written under it.
#pragma once

#include "devices/bus.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace strata {

// The registers and the unread input of a Serial, for running-state snapshots.
struct SerialState {
    std::uint8_t ier { 0 }, lcr { 0x03 }, mcr { 0x08 }, scr { 0 }, dll { 0x0c }, dlm { 0 };
    bool thr_empty_pending { false };
    std::vector<std::uint8_t> input;
};

class Serial final : public BusDevice {
public:
    // output_fd receives every byte the guest transmits; -1 drops them.
    // raise_irq is called (without the lock held) when an enabled interrupt fires.
    Serial(int output_fd, std::function<void()> raise_irq);

    void read(std::uint64_t offset, std::span<std::byte> data) override;
    void write(std::uint64_t offset, std::span<std::byte const> data) override;

    // Queues bytes for the guest to read. Returns how many were taken; the rest
    // should be offered again later (the receive buffer is bounded).
    std::size_t queue_input(std::span<std::byte const> bytes);
    // True when the guest has room for input (so the input thread may read more).
    bool wants_input() const;

    static constexpr std::size_t input_capacity = 4096;

    // The device's state, and putting one back (before any vCPU runs).
    SerialState save_state() const;
    void restore_state(SerialState const& state);

private:
    enum Reg : std::uint8_t {
        Data = 0,          // rw  RBR/THR (DLL when DLAB)
        InterruptEnable = 1, // rw  IER (DLM when DLAB)
        InterruptId = 2,   // r   IIR / w FCR
        LineControl = 3,   // rw  LCR
        ModemControl = 4,  // rw  MCR
        LineStatus = 5,    // r   LSR
        ModemStatus = 6,   // r   MSR
        Scratch = 7,       // rw  SCR
    };
    std::uint8_t read_reg(std::uint8_t reg);
    bool write_reg(std::uint8_t reg, std::uint8_t value); // true: raise IRQ
    bool interrupt_pending() const;

    int m_output_fd;
    std::function<void()> m_raise_irq;
    mutable std::mutex m_lock;
    std::deque<std::uint8_t> m_input;
    std::uint8_t m_ier { 0 };
    std::uint8_t m_lcr { 0x03 };
    std::uint8_t m_mcr { 0x08 };
    std::uint8_t m_scr { 0 };
    std::uint8_t m_dll { 0x0c }; // 9600 baud
    std::uint8_t m_dlm { 0 };
    bool m_thr_empty_pending { false };
};

} // namespace strata
