#include "vmm/agent_channel.h"

namespace strata {

AgentChannel::AgentChannel(AgentIo io)
    : m_io(std::move(io))
{
}

void AgentChannel::on_guest_bytes(std::span<std::byte const> bytes)
{
    std::unique_lock lock(m_lock);
    for (std::byte b : bytes) {
        char const c = static_cast<char>(b);
        if (c == '\n') {
            if (m_discarding) {
                m_discarding = false;
            } else if (!m_partial.empty()) {
                std::string line;
                line.swap(m_partial);
                if (line.back() == '\r')
                    line.pop_back();
                handle_line(line);
            }
            m_partial.clear();
            continue;
        }
        if (m_discarding)
            continue;
        if (m_partial.size() >= MaxLineBytes) {
            ++m_stats.overlong_lines;
            m_partial.clear();
            m_discarding = true;
            continue;
        }
        m_partial.push_back(c);
    }
}

// Called with m_lock held.
void AgentChannel::handle_line(std::string const& line)
{
    if (line.empty())
        return;
    // allow_exceptions=false: malformed JSON gives a discarded value, never a throw.
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !m_awaited) {
        ++m_stats.ignored_lines;
        return;
    }
    auto id = j.find("id");
    auto ok = j.find("ok");
    if (id == j.end() || !id->is_number_unsigned() || id->get<std::uint64_t>() != *m_awaited || ok == j.end()
        || !ok->is_boolean()) {
        ++m_stats.ignored_lines;
        return;
    }
    AgentReply reply;
    reply.ok = ok->get<bool>();
    if (reply.ok) {
        auto r = j.find("result");
        reply.result = r != j.end() ? *r : nlohmann::json::object();
    } else {
        auto e = j.find("error");
        reply.error = e != j.end() && e->is_string() ? e->get<std::string>() : std::string("the agent gave no reason");
    }
    reply.line = std::move(j);
    m_reply = std::move(reply);
    m_awaited.reset();
    ++m_stats.replies;
    m_cv.notify_all();
}

Result<AgentReply> AgentChannel::request(std::string const& cmd, nlohmann::json const& args, std::chrono::milliseconds timeout,
    bool* delivered)
{
    {
        // Said before queueing for the channel: a background request holding
        // it gives way (exchange).
        std::lock_guard lock(m_lock);
        ++m_wanted;
        m_cv.notify_all();
    }
    std::lock_guard one_at_a_time(m_request_lock);
    {
        std::lock_guard lock(m_lock);
        --m_wanted;
    }
    return exchange(cmd, args, timeout, delivered, false);
}

Result<AgentReply> AgentChannel::request_background(std::string const& cmd, nlohmann::json const& args,
    std::chrono::milliseconds timeout)
{
    std::lock_guard one_at_a_time(m_request_lock);
    return exchange(cmd, args, timeout, nullptr, true);
}

Result<AgentReply> AgentChannel::exchange(std::string const& cmd, nlohmann::json const& args, std::chrono::milliseconds timeout,
    bool* delivered, bool background)
{
    if (delivered)
        *delivered = false;
    nlohmann::json message = args.is_object() ? args : nlohmann::json::object();
    std::uint64_t id = 0;
    {
        std::lock_guard lock(m_lock);
        if (m_closed)
            return make_error(ErrorKind::Unavailable, "the VM has ended; no guest agent to ask '" + cmd + "'");
        if (background && m_wanted > 0)
            return make_error(ErrorKind::Busy, "another request wants the guest agent; '" + cmd + "' was not sent");
        id = m_next_id++;
        m_awaited = id;
        m_reply.reset();
        ++m_stats.requests;
    }
    message["id"] = id;
    message["cmd"] = cmd;
    std::string const text = "\n" + message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    auto const data = std::as_bytes(std::span(text.data(), text.size()));
    std::size_t const taken = m_io.write(data);
    if (taken < data.size()) {
        // Whatever part did go in would reach the guest as a truncated line; take
        // it back so the agent sees either the whole request or nothing.
        m_io.discard_pending();
        std::lock_guard lock(m_lock);
        m_awaited.reset();
        return make_error(ErrorKind::Busy, "the guest agent's console is full (the guest is not reading it)");
    }
    std::unique_lock lock(m_lock);
    bool const woken = m_cv.wait_for(lock, timeout, [&] { return m_reply.has_value() || m_closed || (background && m_wanted > 0); });
    if (woken && !m_reply && m_closed) {
        m_awaited.reset();
        return make_error(ErrorKind::Unavailable, "the VM ended before the guest agent answered '" + cmd + "'");
    }
    if (woken && !m_reply) {
        // Another request wants the channel: this one is withdrawn, as on a
        // timeout, and a late reply to it is ignored.
        m_awaited.reset();
        lock.unlock();
        m_io.discard_pending();
        return make_error(ErrorKind::Busy, "'" + cmd + "' gave way to another request to the guest agent before it was answered");
    }
    if (!woken) {
        m_awaited.reset();
        ++m_stats.timeouts;
        lock.unlock();
        std::size_t const withdrawn = m_io.discard_pending();
        if (delivered)
            *delivered = withdrawn == 0;
        return make_error(ErrorKind::Timeout, "the guest agent did not answer '" + cmd + "' within "
                + std::to_string(timeout.count()) + " ms" + (withdrawn > 0 ? " (the guest never read the request)" : ""));
    }
    if (delivered)
        *delivered = true;
    AgentReply reply = std::move(*m_reply);
    m_reply.reset();
    return reply;
}

void AgentChannel::close()
{
    std::lock_guard lock(m_lock);
    m_closed = true;
    m_cv.notify_all();
}

AgentStats AgentChannel::stats() const
{
    std::lock_guard lock(m_lock);
    return m_stats;
}

} // namespace strata
