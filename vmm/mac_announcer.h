// announce_macs: asks the guest agent of a restored clone to move the guest's
// interfaces to the clone's own MACs (set-macs, guest-tools/agent/agent.h), and
// again while no agent answers, until one does, a time limit passes or the VM
// ends; logs the outcome (to stderr: the VMM's vmm.log) and reports each move
// the agent confirms. Machine::announce_new_macs runs it on a thread of its own.
//
// The asking is background work: it must never hold the agent channel while
// someone else needs it. Each try is a background request
// (AgentChannel::request_background), which gives the channel up at once to
// a request made meanwhile (`vms agent`, a capture's freeze and thaw), and it
// is asked again after the retry interval.
//
// Threading: runs on the calling thread until it returns; the channel is
// shared with other threads, `moved` is called on this one.
#pragma once

#include "vmm/machine_nets.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <vector>

namespace strata {

class AgentChannel;

struct MacAnnounceTiming {
    std::chrono::milliseconds window { 120'000 };       // keep asking this long
    std::chrono::milliseconds request_timeout { 5'000 }; // one try waits this long for a reply
    std::chrono::milliseconds retry { 1'000 };           // between tries
};

// Returns when the agent answered, the window passed, or the VM ended
// (`finished` set, or `stop_fd`, an eventfd, readable). `moved` is called for
// each change the agent reports done (moved, or found already moved).
void announce_macs(AgentChannel& agent, std::vector<MachineNets::MacChange> const& changes, MacAnnounceTiming timing, int stop_fd,
    std::atomic<bool> const& finished, std::function<void(MachineNets::MacChange const&)> const& moved);

} // namespace strata
