// The minimum of an i8042 keyboard controller that PCs use to reset: the command
// port 0x64 accepts 0xFE (pulse the reset line), which the VMM turns into a guest
// reset. Other commands answer as an i8042 with no keyboard attached would.
// Reference: the IBM PC/AT technical reference, 8042 commands.
// Not implemented: a keyboard beyond Ctrl-Alt-Del injection, a mouse, the A20
// gate (always on).
// Threading: vCPU threads call read/write; a mutex guards the output byte.
#pragma once

#include "devices/bus.h"

#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

namespace strata {

// An I8042's state, for running-state snapshots.
struct I8042State {
    std::optional<std::uint8_t> output;
    std::uint8_t command_byte { 0 };
    std::optional<std::uint8_t> pending_command;
    std::vector<std::uint8_t> keys;
};

class I8042 final : public BusDevice {
public:
    // on_reset runs on the vCPU thread that asked for the reset; raise_kbd_irq
    // raises IRQ 1 when the output buffer fills with keyboard data.
    I8042(std::function<void()> on_reset, std::function<void()> raise_kbd_irq = {});

    // Queues the set-1 scancodes of Ctrl-Alt-Del (press and release), which the
    // guest reads one at a time from the data port, one interrupt each.
    void press_ctrl_alt_del();

    // Inserted at port 0x60 with length 5, so offset 0 is the data port and
    // offset 4 the status/command port.
    void read(std::uint64_t offset, std::span<std::byte> data) override;
    void write(std::uint64_t offset, std::span<std::byte const> data) override;

    // The device's state, and putting one back (before any vCPU runs).
    I8042State save_state();
    void restore_state(I8042State const& state);

private:
    std::function<void()> m_on_reset;
    std::mutex m_lock;
    std::optional<std::uint8_t> m_output;
    std::uint8_t m_command_byte { 0x00 };
    std::optional<std::uint8_t> m_pending_command;
    std::function<void()> m_raise_kbd_irq;
    std::deque<std::uint8_t> m_keys; // scancodes waiting for the output buffer
};

} // namespace strata
