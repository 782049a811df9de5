#include "vmm/mac_announcer.h"

#include "vmm/agent_channel.h"

#include <cstdio>
#include <poll.h>

namespace strata {

namespace {

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

// Logs what the agent's reply says of each change, and reports the moves.
void report_reply(nlohmann::json const& r, std::vector<MachineNets::MacChange> const& changes,
    std::function<void(MachineNets::MacChange const&)> const& moved)
{
    // The reply is the guest's: only well-formed entries are reported.
    for (auto const& c : changes) {
        std::string outcome = "the guest has no interface with MAC " + c.from + "; its interface keeps the MAC it has";
        bool done = false;
        auto report = [&](char const* key, char const* mac_key, std::string const& mac, char const* what) {
            auto it = r.is_object() ? r.find(key) : r.end();
            if (it == r.end() || !it->is_array())
                return;
            for (auto const& e : *it)
                if (text_at(e, mac_key) == mac) {
                    outcome = "the guest agent " + std::string(what) + " " + log_safe_name(text_at(e, "name"));
                    done = true;
                }
        };
        report("moved", "to", c.to, "moved the guest's interface");
        report("already", "mac", c.to, "had already moved the guest's interface");
        std::fprintf(stderr, "strata: network interface '%s': new MAC %s (the snapshot's %s): %s\n", c.id.c_str(), c.to.c_str(),
            c.from.c_str(), outcome.c_str());
        if (done)
            moved(c);
    }
}

} // namespace

void announce_macs(AgentChannel& agent, std::vector<MachineNets::MacChange> const& changes, MacAnnounceTiming timing, int stop_fd,
    std::atomic<bool> const& finished, std::function<void(MachineNets::MacChange const&)> const& moved)
{
    nlohmann::json list = nlohmann::json::array();
    for (auto const& c : changes) {
        list.push_back({ { "from", c.from }, { "to", c.to } });
        std::fprintf(stderr, "strata: network interface '%s': the device presents the new MAC %s; asking the guest agent to move the "
            "guest's interface from the snapshot's %s\n", c.id.c_str(), c.to.c_str(), c.from.c_str());
    }
    auto const give_up = std::chrono::steady_clock::now() + timing.window;
    std::string last;
    while (!finished.load(std::memory_order_acquire)) {
        auto reply = agent.request_background("set-macs", nlohmann::json { { "interfaces", list } }, timing.request_timeout);
        if (reply && !reply.value().ok) {
            std::fprintf(stderr, "strata: the guest agent could not move the guest's interfaces to their new MACs: %s\n",
                reply.value().error.c_str());
            return;
        }
        if (reply) {
            report_reply(reply.value().result, changes, moved);
            return;
        }
        if (reply.error().kind == ErrorKind::Unavailable)
            return; // the machine ended
        // No answer (a try that gave the channel to another request is none
        // either): asked again.
        last = reply.error().message;
        if (std::chrono::steady_clock::now() >= give_up)
            break;
        // Asked again after the retry interval, unless the machine ends meanwhile.
        pollfd pfd { stop_fd, POLLIN, 0 };
        (void)::poll(&pfd, 1, static_cast<int>(timing.retry.count()));
    }
    if (finished.load(std::memory_order_acquire))
        return;
    for (auto const& c : changes)
        std::fprintf(stderr, "strata: network interface '%s': the device presents the new MAC %s, but no guest agent moved the guest's "
            "interface from the snapshot's %s within %lld s (%s)\n", c.id.c_str(), c.to.c_str(), c.from.c_str(),
            static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(timing.window).count()), last.c_str());
}

} // namespace strata
