// Machine: a restored clone's network identity. Its virtio-net devices present
// the MACs its configuration gives (MachineNets::apply_new_macs), but the
// guest's driver read the snapshot's MAC at probe and keeps it, and virtio-net
// has no way to make a running driver read the MAC again. The guest agent can
// move the interface (set-macs, guest-tools/agent/agent.h): this asks it to,
// from a thread of its own, so neither the restore nor the guest waits
// (vmm/mac_announcer.h: the asking gives the agent channel up to any other
// request at once).
#include "vmm/machine.h"

#include "vmm/mac_announcer.h"
#include "vmm/machine_nets.h"

namespace strata {

void Machine::announce_new_macs()
{
    MacAnnounceTiming timing;
    timing.window = MacAnnounceWindow;
    announce_macs(*m_agent, m_nets->mac_changes(), timing, m_done_event.get(), m_finished,
        [this](MachineNets::MacChange const& change) { m_nets->guest_moved(change); });
}

} // namespace strata
