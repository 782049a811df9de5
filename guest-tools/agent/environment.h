// What the agent needs from the system it runs on, behind an interface so that
// the protocol, provisioning and generalize logic run unchanged on the host in
// tests (a fake root directory, a recording freezer, a clock the test moves).
// The real implementation (system_environment.cpp) issues FIFREEZE/FITHAW, reads
// /proc/self/mounts and powers the VM off through reboot(2).
// Threading: used from the agent's single thread.
#pragma once

#include <chrono>
#include <memory>
#include <filesystem>
#include <string>
#include <vector>

namespace strata::agent {

struct Mount {
    std::string device;
    std::string path;
    std::string fstype;
    bool read_only { false };
};

class Environment {
public:
    virtual ~Environment() = default;
    // The directory the guest's root file system is seen at ("/" in the guest).
    virtual std::filesystem::path root() const = 0;
    virtual std::vector<Mount> mounts() = 0;
    // FIFREEZE / FITHAW on the file system mounted at path; "" on success, else why.
    virtual std::string freeze(std::string const& path) = 0;
    virtual std::string thaw(std::string const& path) = 0;
    // Flushes and ends the VM (with reboot=k the kernel resets through the i8042,
    // which strata treats as the end of the VM). Returns only in tests.
    virtual void power_off() = 0;
    virtual void set_hostname(std::string const& name) = 0;
    virtual std::chrono::steady_clock::time_point now() = 0;
};

// The environment of a real guest; root is normally "/".
std::unique_ptr<Environment> make_system_environment(std::filesystem::path root = "/");

} // namespace strata::agent
