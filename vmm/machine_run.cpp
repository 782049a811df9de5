// Machine: the threads of a running VM. Each vCPU's KVM_RUN loop, which parks on
// pause and turns KVM's exits into a MachineExit or hands port and MMIO exits to
// machine_exits.cpp, and the input thread feeding the serial port.
#include "vmm/machine.h"

#include "base/thread.h"
#include "devices/legacy/serial.h"
#include "vmm/agent_channel.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/machine_nets.h"

#include <cerrno>
#include <csignal>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata {

MachineExit exit_for_system_event(std::uint32_t type)
{
    switch (type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN: return { MachineExit::Kind::PowerOff, 0, {} };
    case KVM_SYSTEM_EVENT_RESET: return { MachineExit::Kind::Reset, 0, {} };
    case KVM_SYSTEM_EVENT_CRASH: return { MachineExit::Kind::Failed, 0, "the guest crashed (KVM system event crash)" };
    default: return { MachineExit::Kind::Failed, 0, "unexpected KVM system event " + std::to_string(type) };
    }
}

MachineExit Machine::run()
{
    Vcpu::install_kick_signal();
    for (auto& v : m_vcpus) {
        Vcpu* vcpu = v.get();
        m_threads.push_back(start_thread(ThreadKind::Vcpu, "strata-vcpu" + std::to_string(vcpu->index()), [this, vcpu] { vcpu_loop(*vcpu); }));
    }
    if (m_io.serial_in >= 0)
        m_input_thread = start_thread(ThreadKind::DeviceIo, "strata-serial", [this] { input_loop(); });
    if (m_nets && !m_nets->mac_changes().empty())
        m_mac_thread = start_thread(ThreadKind::DeviceIo, "strata-netmac", [this] { announce_new_macs(); });

    pollfd pfd { m_done_event.get(), POLLIN, 0 };
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
    for (auto& t : m_threads)
        t.join();
    m_threads.clear();
    eventfd_signal(m_input_stop.get());
    if (m_input_thread.joinable())
        m_input_thread.join();
    // No guest is left to answer: a request still waiting ends now.
    m_agent->close();
    if (m_mac_thread.joinable())
        m_mac_thread.join();
    return m_exit;
}

void Machine::vcpu_loop(Vcpu& vcpu)
{
    // Only the kick signal may interrupt a vCPU thread; SIGINT and SIGTERM belong
    // to the main thread.
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    vcpu.bind_to_current_thread();

    while (!m_finished.load(std::memory_order_acquire)) {
        {
            std::unique_lock guard(m_pause_lock);
            if (m_pause_requested) {
                // Finish the last exit's instruction inside KVM before parking, so
                // a paused vCPU's registers are whole (a snapshot saves them).
                if (auto done = vcpu.complete_pending_exit(); !done) {
                    guard.unlock();
                    finish({ MachineExit::Kind::Failed, 0, done.error().message + " on vCPU " + std::to_string(vcpu.index()) });
                    std::lock_guard wake(m_pause_lock);
                    m_pause_cv.notify_all();
                    return;
                }
                ++m_vcpus_parked;
                m_pause_cv.notify_all();
                m_pause_cv.wait(guard, [&] { return !m_pause_requested || m_finished.load(); });
                --m_vcpus_parked;
                // Clear the kick so the next KVM_RUN enters the guest.
                vcpu.clear_exit_request();
                if (m_finished.load())
                    break;
            }
        }
        auto ran = vcpu.run();
        if (!ran) {
            finish({ MachineExit::Kind::Failed, 0, ran.error().message + " on vCPU " + std::to_string(vcpu.index()) });
            return;
        }
        if (!ran.value())
            continue; // interrupted: re-check m_finished
        auto& run = vcpu.run_state();
        switch (run.exit_reason) {
        case KVM_EXIT_IO:
            handle_io(run);
            break;
        case KVM_EXIT_MMIO:
            handle_mmio(run);
            break;
        case KVM_EXIT_SHUTDOWN:
            finish({ MachineExit::Kind::TripleFault, 0, "vCPU " + std::to_string(vcpu.index()) + " triple fault (KVM_EXIT_SHUTDOWN); registers:\n" + vcpu.dump_registers() });
            return;
        case KVM_EXIT_SYSTEM_EVENT:
            finish(exit_for_system_event(run.system_event.type));
            return;
        case KVM_EXIT_HLT:
            // With the in-kernel LAPIC, KVM handles HLT itself; seeing it here means a
            // halt that can never wake (the guest is done without saying so).
            finish({ MachineExit::Kind::Failed, 0, "vCPU " + std::to_string(vcpu.index()) + " halted" });
            return;
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_FAIL_ENTRY:
            finish({ MachineExit::Kind::Failed, 0, "KVM could not enter vCPU " + std::to_string(vcpu.index()) + " (hardware entry failure reason 0x" + std::to_string(run.fail_entry.hardware_entry_failure_reason) + "); registers:\n" + vcpu.dump_registers() });
            return;
        case KVM_EXIT_INTERNAL_ERROR: {
            std::string why = run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? "an instruction KVM cannot emulate" : "KVM internal error " + std::to_string(run.internal.suberror);
            finish({ MachineExit::Kind::Failed, 0, "vCPU " + std::to_string(vcpu.index()) + " stopped on " + why + "; registers:\n" + vcpu.dump_registers() });
            return;
        }
        default:
            finish({ MachineExit::Kind::Failed, 0, "unexpected KVM exit reason " + std::to_string(run.exit_reason) + " on vCPU " + std::to_string(vcpu.index()) });
            return;
        }
    }
}

void Machine::input_loop()
{
    std::byte buf[256];
    pollfd fds[2] = { { m_input_stop.get(), POLLIN, 0 }, { m_io.serial_in, POLLIN, 0 } };
    while (true) {
        // While the guest's receive buffer is full, wait only for the stop event
        // (with a short timeout to look again), so no input is read and dropped.
        bool room = m_serial->wants_input();
        int r = ::poll(fds, room ? 2 : 1, room ? -1 : 10);
        if (r < 0 && errno != EINTR)
            return;
        if (fds[0].revents & POLLIN)
            return;
        if (!room || !(fds[1].revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t n = ::read(m_io.serial_in, buf, sizeof buf);
        if (n <= 0) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            return; // end of input: the guest simply gets no more
        }
        std::span<std::byte const> rest(buf, static_cast<std::size_t>(n));
        while (!rest.empty()) {
            auto taken = m_serial->queue_input(rest);
            rest = rest.subspan(taken);
            if (!rest.empty()) {
                pollfd stop { m_input_stop.get(), POLLIN, 0 };
                if (::poll(&stop, 1, 10) > 0)
                    return;
            }
        }
    }
}

} // namespace strata
