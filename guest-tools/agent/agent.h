// The agent's request handling: a line-based JSON protocol served over one
// byte channel (a virtio-console port in the guest; a socketpair in tests).
//
// Each request is one line holding a JSON object {"id": <any>, "cmd": "..."};
// each reply is one line {"id": <same>, "ok": true, "result": {...}} or
// {"id": ..., "ok": false, "error": "..."}. Commands:
//   ping                      -> {"agent": "strata-agent", "version": 1, "instance_id", "hostname",
//                                "frozen": bool, "ssh_host_keys": [{"type", "fingerprint"}]}
//   freeze {"timeout_s": N}   -> FIFREEZE on every writable, freezable mount,
//                                deepest first; {"frozen": [paths], "timeout_s"}.
//                                The agent thaws by itself after the timeout
//                                (default 10 s, at most 300 s) so a VMM that
//                                died cannot leave the guest frozen.
//   thaw                      -> {"thawed": [paths], "auto_thawed": bool}: auto_thawed
//                                says the timeout had already thawed them, so a
//                                capture taken meanwhile was not quiesced.
//   generalize                -> removes instance identity (provision.h), replies,
//                                then powers the VM off.
//   set-macs {"interfaces": [{"from": MAC, "to": MAC}]}
//                             -> gives the interface whose MAC is `from` the MAC
//                                `to` (SIOCSIFHWADDR, the link stays up): what a
//                                VMM asks of a restored clone of a running guest,
//                                whose driver kept the snapshot's MAC. Replies
//                                {"moved": [{"name", "from", "to"}], "already":
//                                [{"name", "mac"}] (an interface has `to`: asked
//                                before), "missing": [from...]}; ok=false when a
//                                change failed.
// Unknown commands and malformed lines get ok=false; the channel stays usable.
// Threading: one thread; tick() must be called periodically (serve() does).
#pragma once

#include "environment.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace strata::agent {

class Agent {
public:
    Agent(Environment& env, std::string instance_id)
        : m_env(env)
        , m_instance_id(std::move(instance_id))
    {
    }

    // Handles one request line and returns the reply line (without the newline).
    std::string handle_line(std::string const& line);
    // Auto-thaws when the freeze timeout has passed.
    void tick();
    // When the agent next needs tick(), if it does.
    std::optional<std::chrono::steady_clock::time_point> deadline() const { return m_thaw_deadline; }
    bool frozen() const { return !m_frozen.empty(); }
    // Set once generalize has replied: the caller flushes the reply and then
    // calls Environment::power_off().
    bool power_off_requested() const { return m_power_off; }

    static constexpr int kDefaultFreezeTimeoutS = 10;
    static constexpr int kMaxFreezeTimeoutS = 300;

private:
    std::vector<std::string> thaw_all();
    nlohmann::json set_macs(nlohmann::json const& id, nlohmann::json const& req);

    Environment& m_env;
    std::string m_instance_id;
    std::vector<std::string> m_frozen; // in freeze order
    std::optional<std::chrono::steady_clock::time_point> m_thaw_deadline;
    bool m_auto_thawed { false };
    bool m_power_off { false };
};

// Serves the protocol on fd until EOF or until generalize powers off; returns
// then. Lines longer than 64 KiB are refused.
void serve(int fd, Agent& agent, Environment& env);

} // namespace strata::agent
