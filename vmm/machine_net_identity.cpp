// Machine: a restored clone's network identity. Its virtio-net devices present
// the MACs its configuration gives (MachineNets::apply_new_macs), but the
// guest's driver read the snapshot's MAC at probe and keeps it, and virtio-net
// has no way to make a running driver read the MAC again. The guest agent can
// move the interface (set-macs, guest-tools/agent/agent.h): this asks it to,
// from a thread of its own, so neither the restore nor the guest waits.
#include "vmm/machine.h"

#include "vmm/agent_channel.h"
#include "vmm/machine_nets.h"

#include <cstdio>
#include <poll.h>

namespace strata {

namespace {

// How long one request may wait for the agent's reply; while none comes the
// request is withdrawn and asked again a second later (an agent that was not
// yet serving when the snapshot was taken may start later).
constexpr auto RequestTimeout = std::chrono::seconds(5);

// The string at j[key], or "".
std::string text_at(nlohmann::json const& j, char const* key)
{
    auto it = j.is_object() ? j.find(key) : j.end();
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// An interface name the guest reported, fit for a log line: the guest chose
// it, so anything but the characters Linux names are made of (a newline could
// forge a line of its own) becomes '?', and it is cut to IFNAMSIZ - 1.
std::string log_safe_name(std::string name)
{
    if (name.size() > 15)
        name.resize(15);
    for (char& c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            c = '?';
    return name;
}

} // namespace

void Machine::announce_new_macs()
{
    auto const& changes = m_nets->mac_changes();
    nlohmann::json list = nlohmann::json::array();
    for (auto const& c : changes)
        list.push_back({ { "from", c.from }, { "to", c.to } });
    for (auto const& c : changes)
        std::fprintf(stderr, "strata: network interface '%s': the device presents the new MAC %s; asking the guest agent to move the "
            "guest's interface from the snapshot's %s\n", c.id.c_str(), c.to.c_str(), c.from.c_str());
    auto const give_up = std::chrono::steady_clock::now() + MacAnnounceWindow;
    std::string last;
    while (!m_finished.load(std::memory_order_acquire)) {
        auto reply = m_agent->request("set-macs", nlohmann::json { { "interfaces", list } },
            std::chrono::duration_cast<std::chrono::milliseconds>(RequestTimeout));
        if (reply && !reply.value().ok) {
            std::fprintf(stderr, "strata: the guest agent could not move the guest's interfaces to their new MACs: %s\n",
                reply.value().error.c_str());
            return;
        }
        if (reply) {
            // The reply is the guest's: only well-formed entries are reported.
            auto const& r = reply.value().result;
            for (auto const& c : changes) {
                std::string outcome = "the guest has no interface with MAC " + c.from + "; its interface keeps the MAC it has";
                bool moved = false;
                auto report = [&](char const* key, char const* mac_key, std::string const& mac, char const* what) {
                    auto it = r.is_object() ? r.find(key) : r.end();
                    if (it == r.end() || !it->is_array())
                        return;
                    for (auto const& e : *it)
                        if (text_at(e, mac_key) == mac) {
                            outcome = "the guest agent " + std::string(what) + " " + log_safe_name(text_at(e, "name"));
                            moved = true;
                        }
                };
                report("moved", "to", c.to, "moved the guest's interface");
                report("already", "mac", c.to, "had already moved the guest's interface");
                // Only a move the agent reports changes what a snapshot of
                // this VM says the guest's driver uses.
                if (moved)
                    m_nets->guest_moved(c);
                std::fprintf(stderr, "strata: network interface '%s': new MAC %s (the snapshot's %s): %s\n", c.id.c_str(), c.to.c_str(),
                    c.from.c_str(), outcome.c_str());
            }
            return;
        }
        if (reply.error().kind == ErrorKind::Unavailable)
            return; // the machine ended
        last = reply.error().message;
        if (std::chrono::steady_clock::now() >= give_up)
            break;
        // A second before asking again, unless the machine ends meanwhile.
        pollfd pfd { m_done_event.get(), POLLIN, 0 };
        (void)::poll(&pfd, 1, 1000);
    }
    if (m_finished.load(std::memory_order_acquire))
        return;
    for (auto const& c : changes)
        std::fprintf(stderr, "strata: network interface '%s': the device presents the new MAC %s, but no guest agent moved the guest's "
            "interface from the snapshot's %s within %lld s (%s)\n", c.id.c_str(), c.to.c_str(), c.from.c_str(),
            static_cast<long long>(MacAnnounceWindow.count()), last.c_str());
}

} // namespace strata
