// AgentChannel (vmm/agent_channel.h) against a fake guest: request/reply matching
// by id, hostile output (garbage, wrong ids, over-long lines, split lines), the
// timeout that withdraws an unread request, a full console, background requests
// that give way; the MAC announcer (vmm/mac_announcer.h) on the same channel;
// and the provisioning argument strata.meta= (vmm/vm_config.h) decoded back.
#include "base/fd.h"
#include "vmm/agent_channel.h"
#include "vmm/mac_announcer.h"
#include "vmm/vm_config.h"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <sys/eventfd.h>
#include <thread>
#include <vector>

using namespace strata;
using namespace std::chrono_literals;

namespace {

// The console's host side as the channel sees it: what the channel writes piles
// up in `sent` (up to `capacity` bytes) until the fake guest takes it.
struct FakeConsole {
    std::mutex lock;
    std::string sent;
    std::size_t capacity { 1 << 20 };
    AgentChannel channel { AgentIo {
        [this](std::span<std::byte const> b) {
            std::lock_guard g(lock);
            std::size_t n = std::min(b.size(), capacity - std::min(capacity, sent.size()));
            sent.append(reinterpret_cast<char const*>(b.data()), n); // SAFETY: bytes viewed as chars
            return n;
        },
        [this] {
            std::lock_guard g(lock);
            std::size_t n = sent.size();
            sent.clear();
            return n;
        } } };

    // The guest reads everything sent so far.
    std::string take()
    {
        std::lock_guard g(lock);
        std::string out;
        out.swap(sent);
        return out;
    }
    void guest_says(std::string const& text) { channel.on_guest_bytes(std::as_bytes(std::span(text.data(), text.size()))); }
};

// Waits until the channel has sent a request, takes it and returns its id.
std::uint64_t next_request(FakeConsole& c, std::string* text = nullptr)
{
    for (int i = 0; i < 2000; ++i) {
        std::string s = c.take();
        if (!s.empty()) {
            if (text)
                *text = s;
            auto j = nlohmann::json::parse(s.substr(s.find('{')), nullptr, false);
            return j["id"].get<std::uint64_t>();
        }
        std::this_thread::sleep_for(1ms);
    }
    FAIL("no request was sent");
    return 0;
}

} // namespace

TEST_CASE("agent channel: a reply with the request's id answers it and noise is ignored")
{
    FakeConsole c;
    std::thread guest([&] {
        std::string text;
        auto id = next_request(c, &text);
        CHECK(text.front() == '\n');
        CHECK(text.back() == '\n');
        CHECK(text.find("\"cmd\":\"ping\"") != std::string::npos);
        c.guest_says("garbage\n[1,2]\n{\"id\":" + std::to_string(id + 7) + ",\"ok\":true}\n{\"id\":\"x\",\"ok\":true}\n");
        // The real reply, split across two writes and ending in CRLF.
        std::string reply = "{\"id\":" + std::to_string(id) + ",\"ok\":true,\"result\":{\"agent\":\"t\"}}\r\n";
        c.guest_says(reply.substr(0, 10));
        c.guest_says(reply.substr(10));
    });
    auto r = c.channel.request("ping", nlohmann::json::object(), 3000ms);
    guest.join();
    REQUIRE(r.has_value());
    CHECK(r.value().ok);
    CHECK(r.value().result["agent"] == "t");
    auto s = c.channel.stats();
    CHECK(s.ignored_lines == 4);
    CHECK(s.replies == 1);
}

TEST_CASE("agent channel: ok=false replies carry the agent's error and args are sent")
{
    FakeConsole c;
    std::thread guest([&] {
        std::string text;
        auto id = next_request(c, &text);
        CHECK(text.find("\"timeout_s\":10") != std::string::npos);
        c.guest_says("{\"id\":" + std::to_string(id) + ",\"ok\":false,\"error\":\"already frozen\"}\n");
    });
    auto r = c.channel.request("freeze", nlohmann::json { { "timeout_s", 10 } }, 3000ms);
    guest.join();
    REQUIRE(r.has_value());
    CHECK_FALSE(r.value().ok);
    CHECK(r.value().error == "already frozen");
}

TEST_CASE("agent channel: no reply is a Timeout and an unread request is withdrawn")
{
    FakeConsole c;
    bool delivered = true;
    auto r = c.channel.request("freeze", nlohmann::json::object(), 50ms, &delivered);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::Timeout);
    CHECK(r.error().message.find("never read") != std::string::npos);
    CHECK_FALSE(delivered);
    CHECK(c.take().empty()); // withdrawn: a late freeze never reaches the guest

    // Read but unanswered: delivered, and a late reply to it is ignored later.
    std::thread guest([&] { next_request(c); });
    auto r2 = c.channel.request("ping", nlohmann::json::object(), 100ms, &delivered);
    guest.join();
    CHECK_FALSE(r2.has_value());
    CHECK(delivered);
    c.guest_says("{\"id\":2,\"ok\":true}\n");
    CHECK(c.channel.stats().ignored_lines == 1);
    CHECK(c.channel.stats().timeouts == 2);
}

TEST_CASE("agent channel: close() ends a waiting request at once and refuses later ones")
{
    FakeConsole c;
    std::thread closer([&] {
        next_request(c);
        c.channel.close();
    });
    auto const began = std::chrono::steady_clock::now();
    auto r = c.channel.request("set-macs", nlohmann::json::object(), 60s);
    closer.join();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::Unavailable);
    CHECK(std::chrono::steady_clock::now() - began < 30s);
    auto again = c.channel.request("ping", nlohmann::json::object(), 60s);
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().kind == ErrorKind::Unavailable);
    CHECK(c.take().empty()); // nothing sent after the close
}

TEST_CASE("agent channel: over-long lines are dropped and a full console is Busy")
{
    FakeConsole c;
    c.guest_says(std::string(AgentChannel::MaxLineBytes + 10, 'x'));
    c.guest_says(std::string(100, 'y') + "\n");
    CHECK(c.channel.stats().overlong_lines == 1);
    CHECK(c.channel.stats().ignored_lines == 0);

    c.capacity = 8;
    auto r = c.channel.request("ping", nlohmann::json::object(), 1000ms);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::Busy);
    CHECK(c.take().empty()); // the part that fit was taken back
}

// Whether f, polled every millisecond, holds within 30 s: a guard against a
// hang (what is awaited takes milliseconds), not a measurement.
template<typename F>
bool soon(F&& f)
{
    auto const until = std::chrono::steady_clock::now() + 30s;
    while (!f()) {
        if (std::chrono::steady_clock::now() > until)
            return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

TEST_CASE("agent channel: a background request gives the channel up at once to a request made meanwhile")
{
    // The background request is read and never answered (an agent not yet
    // serving), and may wait an hour: a freeze made meanwhile must not.
    FakeConsole c;
    auto background = std::async(std::launch::async,
        [&] { return c.channel.request_background("set-macs", nlohmann::json::object(), 3600s); });
    next_request(c);
    auto freeze = std::async(std::launch::async, [&] { return c.channel.request("freeze", nlohmann::json::object(), 3600s); });
    std::string text;
    bool const sent = soon([&] { return !(text = c.take()).empty(); });
    CHECK_MESSAGE(sent, "the freeze was not sent: it waits behind the background request");
    if (sent) {
        auto j = nlohmann::json::parse(text.substr(text.find('{')), nullptr, false);
        CHECK(j["cmd"] == "freeze");
        c.guest_says("{\"id\":" + std::to_string(j["id"].get<std::uint64_t>()) + ",\"ok\":true}\n");
    }
    bool const answered = freeze.wait_for(30s) == std::future_status::ready;
    CHECK(answered);
    c.channel.close(); // ends whatever still waits
    auto b = background.get();
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().kind == ErrorKind::Busy);
    auto f = freeze.get();
    REQUIRE(f.has_value());
    CHECK(f.value().ok);
    CHECK(c.channel.stats().timeouts == 0);
}

TEST_CASE("MAC announcer: a freeze meanwhile is answered at once, and the agent's later move is reported")
{
    // An agent that does not answer set-macs at first (not yet serving) and
    // does the second time: the announcer's tries may each wait an hour, yet
    // a freeze made while one waits is sent and answered at once.
    FakeConsole c;
    std::vector<MachineNets::MacChange> const changes { { "eth0", "02:aa:bb:cc:dd:ee", "02:00:00:00:00:07" } };
    MacAnnounceTiming timing;
    timing.window = 3600s;
    timing.request_timeout = 3600s;
    timing.retry = 10ms;
    Fd stop(::eventfd(0, EFD_CLOEXEC));
    std::atomic<bool> finished { false };
    std::atomic<bool> done { false };
    std::vector<std::string> moved;
    std::thread announcer([&] {
        announce_macs(c.channel, changes, timing, stop.get(), finished,
            [&](MachineNets::MacChange const& change) { moved.push_back(change.id + " " + change.to); });
        done = true;
    });

    std::atomic<int> set_macs { 0 };
    std::atomic<bool> guest_ends { false };
    std::thread guest([&] {
        std::string pending;
        while (!guest_ends) {
            pending += c.take();
            for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
                auto j = nlohmann::json::parse(pending.substr(0, nl), nullptr, false);
                pending.erase(0, nl + 1);
                if (!j.is_object())
                    continue;
                auto const id = std::to_string(j["id"].get<std::uint64_t>());
                if (j["cmd"] == "freeze")
                    c.guest_says("{\"id\":" + id + ",\"ok\":true,\"result\":{\"frozen\":[\"/\"]}}\n");
                else if (j["cmd"] == "set-macs" && ++set_macs == 2)
                    c.guest_says("{\"id\":" + id + ",\"ok\":true,\"result\":{\"moved\":[{\"name\":\"eth0\",\"from\":"
                        "\"02:aa:bb:cc:dd:ee\",\"to\":\"02:00:00:00:00:07\"}]}}\n");
            }
            std::this_thread::sleep_for(1ms);
        }
    });

    CHECK(soon([&] { return set_macs.load() == 1; }));
    auto freeze = std::async(std::launch::async, [&] { return c.channel.request("freeze", nlohmann::json::object(), 3600s); });
    bool const answered = freeze.wait_for(30s) == std::future_status::ready;
    CHECK_MESSAGE(answered, "the freeze waits behind the announcer's request");
    bool const ended = soon([&] { return done.load(); });
    CHECK_MESSAGE(ended, "the announcer did not see the agent's move");
    // Whatever still waits ends now (the machine ended).
    finished = true;
    eventfd_signal(stop.get());
    c.channel.close();
    announcer.join();
    guest_ends = true;
    guest.join();
    auto f = freeze.get();
    REQUIRE(f.has_value());
    CHECK(f.value().ok);
    CHECK(set_macs.load() == 2);
    CHECK(moved == std::vector<std::string> { "eth0 02:00:00:00:00:07" });
}

TEST_CASE("strata.meta= carries the instance id, hostname, user and SSH keys")
{
    VmRecord vm;
    vm.name = "web";
    vm.instance_id = "i-0123456789abcdef";
    vm.metadata = { { "hostname", "web-1" }, { "user", "alice" }, { "ssh-authorized-keys", "ssh-ed25519 AAAA a;ssh-rsa BBBB b" },
        { "other", "x" } };
    auto arg = guest_metadata_arg(vm);
    REQUIRE(arg.has_value());
    REQUIRE(arg.value().starts_with("strata.meta="));
    std::string b64 = arg.value().substr(12);
    // Decode (standard alphabet, padded).
    std::string out;
    unsigned value = 0;
    int bits = 0;
    for (char ch : b64) {
        if (ch == '=')
            break;
        auto pos = std::string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/").find(ch);
        REQUIRE(pos != std::string::npos);
        value = (value << 6) | static_cast<unsigned>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((value >> bits) & 0xff));
        }
    }
    auto j = nlohmann::json::parse(out);
    CHECK(j["instance_id"] == "i-0123456789abcdef");
    CHECK(j["hostname"] == "web-1");
    CHECK(j["user"] == "alice");
    CHECK(j["ssh_authorized_keys"] == nlohmann::json { "ssh-ed25519 AAAA a", "ssh-rsa BBBB b" });
    CHECK_FALSE(j.contains("other"));

    vm.metadata["ssh-authorized-keys"] = std::string(3000, 'k');
    auto big = guest_metadata_arg(vm);
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().kind == ErrorKind::Usage);
}
