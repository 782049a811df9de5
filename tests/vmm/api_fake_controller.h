// A VmController for API tests: keeps the configuration it is given, follows the
// Not started -> Running <-> Paused states, records every call, and can be told to
// fail the next call with a given Error or to block until released.
// Threading: the API calls it from its worker thread while the test thread reads
// `calls` and releases blocked calls, so everything is under one mutex.
#pragma once

#include "vmm/api/controller.h"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace strata::api::fake {

class FakeController final : public VmController {
public:
    Result<InstanceInfo> instance_info() override
    {
        std::lock_guard lock(m_mutex);
        return InstanceInfo { "vm-under-test", m_state, "0.1.0-test" };
    }
    Result<VmConfigView> vm_config() override
    {
        auto guard = enter("vm_config");
        STRATA_TRY(take_failure());
        return m_config;
    }
    Result<VmMetrics> metrics() override
    {
        auto guard = enter("metrics");
        STRATA_TRY(take_failure());
        VmMetrics m;
        for (auto const& d : m_config.drives)
            m.disks.push_back(DiskMetrics { d.drive_id, 3, 2, 1, 0, 0, 0, 8192, 512, 0, 0, 0, 0, std::nullopt });
        m.last_capture_stall_us = m_last_stall;
        return m;
    }
    Status set_boot_source(BootSource const& source) override
    {
        auto guard = enter("set_boot_source");
        STRATA_TRY(take_failure());
        m_config.boot_source = source;
        return ok();
    }
    Status put_network_interface(NetworkInterfaceConfig const& net) override
    {
        auto guard = enter("put_network_interface");
        STRATA_TRY(take_failure());
        for (auto& n : m_config.network_interfaces)
            if (n.iface_id == net.iface_id) {
                n = net;
                return ok();
            }
        m_config.network_interfaces.push_back(net);
        return ok();
    }
    Status set_machine_config(MachineSettings const& settings) override
    {
        auto guard = enter("set_machine_config");
        STRATA_TRY(take_failure());
        m_config.machine_config = settings;
        return ok();
    }
    Status update_drive(DriveUpdate const& update) override
    {
        auto guard = enter("update_drive");
        STRATA_TRY(take_failure());
        for (auto& d : m_config.drives) {
            if (d.drive_id == update.drive_id) {
                d.rate_limiter = update.rate_limiter;
                return ok();
            }
        }
        return make_error(ErrorKind::NotFound, "no drive");
    }
    Status set_mmds_config(MmdsConfigRequest const& config) override
    {
        auto guard = enter("set_mmds_config");
        STRATA_TRY(take_failure());
        m_config.mmds_config = config;
        return ok();
    }
    Status put_drive(DriveConfig const& drive) override
    {
        auto guard = enter("put_drive");
        STRATA_TRY(take_failure());
        for (auto& d : m_config.drives) {
            if (d.drive_id == drive.drive_id) {
                d = drive;
                return ok();
            }
        }
        m_config.drives.push_back(drive);
        return ok();
    }
    Status start_instance() override
    {
        auto guard = enter("start_instance");
        STRATA_TRY(take_failure());
        if (!m_config.boot_source)
            return make_error(ErrorKind::Usage, "Cannot start microvm without kernel configuration.");
        m_state = VmState::Running;
        return ok();
    }
    Status send_ctrl_alt_del() override
    {
        auto guard = enter("send_ctrl_alt_del");
        return take_failure();
    }
    Status pause() override
    {
        auto guard = enter("pause");
        STRATA_TRY(take_failure());
        m_state = VmState::Paused;
        return ok();
    }
    Status resume() override
    {
        auto guard = enter("resume");
        STRATA_TRY(take_failure());
        m_state = VmState::Running;
        return ok();
    }
    Result<CaptureResult> snapshot_disks(SnapshotDisksRequest const& request) override
    {
        auto guard = enter("snapshot_disks");
        STRATA_TRY(take_failure());
        m_last_stall = 1234;
        return CaptureResult { request.snapshot_name, 1234 };
    }
    Result<CaptureResult> create_machine_image(MachineImageRequest const& request) override
    {
        auto guard = enter("create_machine_image:" + request.name);
        STRATA_TRY(take_failure());
        m_last_stall = 567;
        return CaptureResult { request.name, 567, request.guest_flush ? "not-quiesced: no agent in the fake" : "" };
    }
    Result<AgentAnswer> agent_command(AgentCommand const& command) override
    {
        auto guard = enter("agent_command:" + command.cmd);
        STRATA_TRY(take_failure());
        if (command.cmd == "thaw")
            return AgentAnswer { false, "not frozen", {} };
        return AgentAnswer { true, {}, R"({"id":1,"ok":true,"result":{"agent":"fake"}})" };
    }

    // Test side.
    void fail_next(Error error)
    {
        std::lock_guard lock(m_mutex);
        m_failure = std::move(error);
    }
    void set_state(VmState state)
    {
        std::lock_guard lock(m_mutex);
        m_state = state;
    }
    std::vector<std::string> calls()
    {
        std::lock_guard lock(m_mutex);
        return m_calls;
    }
    // While blocked, every call waits (after being recorded) until unblock().
    void block()
    {
        std::lock_guard lock(m_mutex);
        m_blocked = true;
    }
    void unblock()
    {
        {
            std::lock_guard lock(m_mutex);
            m_blocked = false;
        }
        m_cv.notify_all();
    }

private:
    std::unique_lock<std::mutex> enter(std::string name)
    {
        std::unique_lock lock(m_mutex);
        m_calls.push_back(std::move(name));
        m_cv.wait(lock, [this] { return !m_blocked; });
        return lock;
    }
    Status take_failure()
    {
        if (!m_failure)
            return ok();
        Error e = *m_failure;
        m_failure.reset();
        return e;
    }

    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_blocked { false };
    VmState m_state { VmState::NotStarted };
    VmConfigView m_config;
    std::optional<std::uint64_t> m_last_stall;
    std::optional<Error> m_failure;
    std::vector<std::string> m_calls;
};

} // namespace strata::api::fake
