// AgentChannel: the VMM's client of the guest agent (guest-tools/agent/agent.h)
// over the VM's virtio-console. One JSON object per line each way: the VMM sends
// {"id": N, "cmd": "...", ...} and waits for the line whose "id" is N, either
// {"id": N, "ok": true, "result": {...}} or {"id": N, "ok": false, "error": "..."}.
//
// Guest output is hostile (STYLE.md 9): lines longer than MaxLineBytes are dropped
// up to their newline; lines that are not JSON objects, carry another id (a reply
// that came after its request timed out), or lack "ok" are ignored and counted;
// nothing the guest sends can grow host memory beyond one line. (A guest tty in
// cooked mode echoes each request back: the echo has no "ok" and is ignored, and
// the CR of a CRLF line ending is dropped.) A request that
// gets no reply in time fails with ErrorKind::Timeout, and whatever of it the
// guest had not yet read is withdrawn from the console (AgentIo::discard_pending),
// so a stale command — a freeze above all — is never delivered late. Each request
// starts with a newline, which ends any partial line an earlier withdrawn request
// left in the guest's buffer (the agent ignores empty lines).
//
// Background work (a restored clone asking the agent to move its interfaces,
// again and again while no agent answers) uses request_background(): it waits
// for its reply only while nobody else wants the channel, and gives it up to a
// request() made meanwhile at once, withdrawn as on a timeout, so a `vms agent`
// request or a capture's freeze never waits behind it.
//
// Threading: on_guest_bytes() runs on the console's I/O thread; request() and
// request_background() on any thread, one at a time (a second caller waits
// for the first to finish, or for a background one to give way).
#pragma once

#include "base/result.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>

namespace strata {

// How the channel reaches the console's host side (VirtioConsole::write and
// discard_pending in the VMM; a fake guest in tests).
struct AgentIo {
    std::function<std::size_t(std::span<std::byte const>)> write; // returns the bytes accepted
    std::function<std::size_t()> discard_pending;                 // returns the bytes withdrawn
};

struct AgentReply {
    bool ok { false };
    nlohmann::json result; // when ok
    std::string error;     // when not ok
    nlohmann::json line;   // the whole reply as the agent sent it
};

struct AgentStats {
    std::uint64_t requests, replies, timeouts;
    std::uint64_t ignored_lines;  // not JSON, not an object, or not an awaited reply
    std::uint64_t overlong_lines; // longer than MaxLineBytes, dropped
};

class AgentChannel {
public:
    static constexpr std::size_t MaxLineBytes = 64 * 1024;

    explicit AgentChannel(AgentIo io);

    // Bytes the guest transmitted on the console.
    void on_guest_bytes(std::span<std::byte const> bytes);

    // Sends cmd with the extra fields of `args` (an object; may be empty) and
    // waits up to `timeout` for its reply. Errors: Timeout (no reply; `delivered`
    // says whether the guest had read the request), Busy (the console's buffer
    // is full: the guest is not reading). An agent's ok=false reply is a success
    // here (AgentReply::ok is false): the caller decides what it means.
    [[nodiscard]] Result<AgentReply> request(std::string const& cmd, nlohmann::json const& args,
        std::chrono::milliseconds timeout, bool* delivered = nullptr);
    // The same for background work: also fails with Busy, the request
    // withdrawn as on a timeout, as soon as a request() is waiting for the
    // channel (before it is sent, when one waits already). The caller asks
    // again later; a reply to the withdrawn request is ignored.
    [[nodiscard]] Result<AgentReply> request_background(std::string const& cmd, nlohmann::json const& args,
        std::chrono::milliseconds timeout);

    AgentStats stats() const;

    // The VM has ended: the request waiting now and every later one fail at
    // once (Unavailable) instead of waiting out their timeouts.
    void close();

private:
    void handle_line(std::string const& line);
    // One request and its reply, with m_request_lock held.
    [[nodiscard]] Result<AgentReply> exchange(std::string const& cmd, nlohmann::json const& args, std::chrono::milliseconds timeout,
        bool* delivered, bool background);

    AgentIo m_io;
    std::mutex m_request_lock; // one request at a time

    mutable std::mutex m_lock;
    std::condition_variable m_cv;
    std::string m_partial;   // bytes since the last newline
    bool m_discarding { false }; // inside an over-long line
    std::uint64_t m_next_id { 1 };
    std::optional<std::uint64_t> m_awaited;
    std::optional<AgentReply> m_reply;
    bool m_closed { false };
    unsigned m_wanted { 0 }; // request() callers waiting for m_request_lock
    AgentStats m_stats {};
};

} // namespace strata
