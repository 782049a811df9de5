#include "agent.h"

#include "provision.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <poll.h>
#include <set>
#include <unistd.h>

namespace strata::agent {

namespace {

using json = nlohmann::json;

// File systems that have nothing to flush to a disk, or cannot be frozen.
bool freezable(Mount const& m)
{
    static std::set<std::string> const virtual_fs { "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "rootfs",
        "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs",
        "fusectl", "autofs", "binfmt_misc", "efivarfs", "overlay", "squashfs", "iso9660", "nsfs" };
    return !m.read_only && !virtual_fs.count(m.fstype);
}

json reply_ok(json const& id, json result) { return json { { "id", id }, { "ok", true }, { "result", std::move(result) } }; }
json reply_err(json const& id, std::string const& why) { return json { { "id", id }, { "ok", false }, { "error", why } }; }

} // namespace

namespace {

// "xx:xx:xx:xx:xx:xx" in lower case, unicast: what strata records and sends.
bool mac_text(json const& v)
{
    if (!v.is_string())
        return false;
    auto const& s = v.get_ref<std::string const&>();
    if (s.size() != 17)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        bool const colon = i % 3 == 2;
        if (colon ? s[i] != ':' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    int const first = std::stoi(s.substr(0, 2), nullptr, 16);
    return (first & 1) == 0;
}

} // namespace

json Agent::set_macs(json const& id, json const& req)
{
    constexpr std::size_t max_interfaces = 16;
    auto it = req.find("interfaces");
    bool well_formed = it != req.end() && it->is_array() && !it->empty() && it->size() <= max_interfaces;
    if (well_formed)
        for (auto const& e : *it)
            well_formed = well_formed && e.is_object() && e.contains("from") && e.contains("to") && mac_text(e["from"]) && mac_text(e["to"]);
    if (!well_formed)
        return reply_err(id, "set-macs needs \"interfaces\": 1 to 16 objects {\"from\": MAC, \"to\": MAC} (lower-case unicast xx:xx:xx:xx:xx:xx)");
    auto links = m_env.link_addresses();
    json moved = json::array(), already = json::array(), missing = json::array();
    std::string failures;
    for (auto const& e : *it) {
        std::string const from = e["from"], to = e["to"];
        auto has = [&](std::string const& mac) {
            return std::find_if(links.begin(), links.end(), [&](LinkAddress const& l) { return l.mac == mac; });
        };
        // Asked again (the VMM retries when a reply is late): nothing to do.
        if (auto done = has(to); done != links.end()) {
            already.push_back({ { "name", done->iface }, { "mac", to } });
            continue;
        }
        auto link = has(from);
        if (link == links.end()) {
            missing.push_back(from);
            continue;
        }
        std::string const err = m_env.set_link_address(LinkAddress { link->iface, to });
        if (!err.empty()) {
            failures += (failures.empty() ? "" : "; ") + err;
            continue;
        }
        moved.push_back({ { "name", link->iface }, { "from", from }, { "to", to } });
        link->mac = to;
    }
    if (!failures.empty())
        return reply_err(id, failures);
    return reply_ok(id, { { "moved", moved }, { "already", already }, { "missing", missing } });
}

std::vector<std::string> Agent::thaw_all()
{
    std::vector<std::string> thawed;
    // Thaw in the reverse of the freeze order: parents before the mounts below them.
    for (auto it = m_frozen.rbegin(); it != m_frozen.rend(); ++it)
        if (m_env.thaw(*it).empty())
            thawed.push_back(*it);
    m_frozen.clear();
    m_thaw_deadline.reset();
    return thawed;
}

void Agent::tick()
{
    if (m_thaw_deadline && m_env.now() >= *m_thaw_deadline) {
        thaw_all();
        m_auto_thawed = true;
    }
}

std::string Agent::handle_line(std::string const& line)
{
    json req = json::parse(line, nullptr, false);
    if (req.is_discarded() || !req.is_object())
        return reply_err(nullptr, "the request is not a JSON object").dump();
    json id = req.contains("id") ? req["id"] : json(nullptr);
    if (!req.contains("cmd") || !req["cmd"].is_string())
        return reply_err(id, "the request has no \"cmd\" string").dump();
    std::string cmd = req["cmd"];

    if (cmd == "ping") {
        // The guest's hostname as the kernel has it, so the VMM can see what
        // provisioning set.
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) != 0)
            host[0] = '\0';
        // The SSH host keys' fingerprints, so the host can check the key an SSH
        // client is shown against what the guest itself holds.
        json keys = json::array();
        for (auto const& k : ssh_host_keys(m_env.root()))
            keys.push_back({ { "type", k.type }, { "fingerprint", k.fingerprint } });
        return reply_ok(id, { { "agent", "strata-agent" }, { "version", 1 }, { "instance_id", m_instance_id },
                                { "hostname", std::string(host) }, { "frozen", frozen() }, { "ssh_host_keys", keys } })
            .dump();
    }

    if (cmd == "freeze") {
        int timeout = kDefaultFreezeTimeoutS;
        if (req.contains("timeout_s")) {
            if (!req["timeout_s"].is_number_integer() || req["timeout_s"].get<int>() <= 0
                || req["timeout_s"].get<int>() > kMaxFreezeTimeoutS)
                return reply_err(id, "timeout_s must be an integer from 1 to 300").dump();
            timeout = req["timeout_s"].get<int>();
        }
        if (frozen())
            return reply_err(id, "already frozen; thaw first").dump();
        std::vector<Mount> mounts;
        std::set<std::string> devices;
        for (auto const& m : m_env.mounts())
            if (freezable(m) && devices.insert(m.device).second)
                mounts.push_back(m);
        // Deepest mount points first, so that nothing below a frozen file system
        // still has writes in flight toward it.
        std::stable_sort(mounts.begin(), mounts.end(),
            [](Mount const& a, Mount const& b) { return a.path.size() > b.path.size(); });
        for (auto const& m : mounts) {
            std::string err = m_env.freeze(m.path);
            if (!err.empty()) {
                thaw_all();
                return reply_err(id, "freeze " + m.path + ": " + err + " (thawed the others)").dump();
            }
            m_frozen.push_back(m.path);
        }
        m_auto_thawed = false;
        m_thaw_deadline = m_env.now() + std::chrono::seconds(timeout);
        return reply_ok(id, { { "frozen", m_frozen }, { "timeout_s", timeout } }).dump();
    }

    if (cmd == "thaw") {
        bool was_auto = m_auto_thawed && !frozen();
        auto thawed = thaw_all();
        m_auto_thawed = false;
        return reply_ok(id, { { "thawed", thawed }, { "auto_thawed", was_auto } }).dump();
    }

    if (cmd == "generalize") {
        if (frozen())
            thaw_all();
        auto r = generalize(m_env.root());
        if (!r.error.empty())
            return reply_err(id, r.error).dump();
        m_power_off = true;
        return reply_ok(id, { { "removed", r.actions }, { "power_off", true } }).dump();
    }

    if (cmd == "set-macs")
        return set_macs(id, req).dump();

    return reply_err(id, "unknown command '" + cmd + "' (ping, freeze, thaw, generalize, set-macs)").dump();
}

void serve(int fd, Agent& agent, Environment& env)
{
    std::string buf;
    bool discarding = false; // inside an over-long line
    constexpr std::size_t max_line = 64 * 1024;
    auto send = [&](std::string const& s) {
        std::string out = s + "\n";
        std::size_t done = 0;
        while (done < out.size()) {
            ssize_t n = ::write(fd, out.data() + done, out.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return false;
            done += static_cast<std::size_t>(n);
        }
        return true;
    };
    for (;;) {
        int timeout_ms = -1;
        if (auto d = agent.deadline()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*d - env.now()).count();
            timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 1000));
        }
        pollfd p { fd, POLLIN, 0 };
        int r = ::poll(&p, 1, timeout_ms);
        agent.tick();
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return;
        if (r == 0)
            continue;
        char chunk[4096];
        ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; // EOF: the VMM side closed
        buf.append(chunk, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = buf.find('\n')) != std::string::npos) {
            std::string line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            if (discarding) {
                discarding = false;
                continue;
            }
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            if (line.empty())
                continue;
            if (!send(agent.handle_line(line)))
                return;
            if (agent.power_off_requested()) {
                ::sync();
                env.power_off();
                return;
            }
        }
        if (buf.size() > max_line) {
            send(R"({"id":null,"ok":false,"error":"request line longer than 64 KiB"})");
            buf.clear();
            discarding = true;
        }
    }
}

} // namespace strata::agent
