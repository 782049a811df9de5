// How KVM's system events end a machine (vmm/machine.h exit_for_system_event):
// only a shutdown and a reset are clean ends; a crash or any other event fails.
#include "vmm/machine.h"

#include <doctest/doctest.h>

#include <linux/kvm.h>

using strata::MachineExit;

TEST_CASE("a KVM shutdown event is a power-off and a reset event a reset")
{
    CHECK(strata::exit_for_system_event(KVM_SYSTEM_EVENT_SHUTDOWN).kind == MachineExit::Kind::PowerOff);
    CHECK(strata::exit_for_system_event(KVM_SYSTEM_EVENT_RESET).kind == MachineExit::Kind::Reset);
}

TEST_CASE("a KVM crash event, or any other, fails the machine and says which")
{
    auto crash = strata::exit_for_system_event(KVM_SYSTEM_EVENT_CRASH);
    CHECK(crash.kind == MachineExit::Kind::Failed);
    CHECK(crash.details.find("crash") != std::string::npos);
    for (std::uint32_t type : { 0u, 4u, 5u, 6u, 99u }) {
        auto other = strata::exit_for_system_event(type);
        INFO("type ", type);
        CHECK(other.kind == MachineExit::Kind::Failed);
        CHECK(other.details.find(std::to_string(type)) != std::string::npos);
    }
}
