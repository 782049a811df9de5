// The metadata service without a guest: the data store's API side and its HTTP
// answers (mmds_store.h), the HTTP parser, and the network stack (mmds_stack.h)
// driven frame by frame as a guest's TCP would: ARP, the handshake, a request in
// two segments, an answer longer than one segment within the guest's window,
// keep-alive, FIN, resets, and hostile frames.
#include "devices/virtio/net/mmds_stack.h"
#include "devices/virtio/net/mmds_store.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using namespace strata::virtio::net;
using namespace std::chrono_literals;

namespace {

auto const T0 = std::chrono::steady_clock::time_point {} + 1000s;

MmdsRequest get(std::string path, std::vector<std::pair<std::string, std::string>> headers = {})
{
    return MmdsRequest { "GET", std::move(path), std::move(headers) };
}

std::shared_ptr<MmdsStore> sample_store(MmdsVersion version = MmdsVersion::V1)
{
    auto store = MmdsStore::create(version);
    REQUIRE(store->put(R"({"latest":{"meta-data":{"ami-id":"ami-1","reservation-id":"r-2","net":{"a":"b"}}},"list":[1,"two"]})"));
    return store;
}

constexpr std::uint32_t GuestIp = 0x0a000002; // 10.0.0.2
constexpr MacAddress GuestMac { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };

void put16(std::string& f, std::size_t at, std::uint16_t v)
{
    f[at] = static_cast<char>(v >> 8);
    f[at + 1] = static_cast<char>(v & 0xff);
}
void put32(std::string& f, std::size_t at, std::uint32_t v)
{
    put16(f, at, static_cast<std::uint16_t>(v >> 16));
    put16(f, at + 2, static_cast<std::uint16_t>(v));
}
std::uint16_t get16(std::vector<std::byte> const& f, std::size_t at)
{
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(f[at]) << 8 | std::to_integer<unsigned>(f[at + 1]));
}
std::uint32_t get32(std::vector<std::byte> const& f, std::size_t at)
{
    return std::uint32_t { get16(f, at) } << 16 | get16(f, at + 2);
}

std::string ether(std::uint16_t type)
{
    std::string f(14, '\0');
    std::memcpy(f.data(), MmdsMac.data(), 6);
    std::memcpy(f.data() + 6, GuestMac.data(), 6);
    put16(f, 12, type);
    return f;
}

std::string tcp_frame(std::uint16_t port, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags, std::string const& payload,
    std::uint16_t window = 65535, std::uint16_t mss = 0, std::uint32_t dst = MmdsDefaultIpv4, std::uint16_t dst_port = 80)
{
    std::string const opts = mss ? std::string("\x02\x04", 2) + std::string { static_cast<char>(mss >> 8), static_cast<char>(mss & 0xff) } : "";
    std::string f = ether(0x0800);
    std::string ip(20, '\0');
    ip[0] = 0x45;
    put16(ip, 2, static_cast<std::uint16_t>(20 + 20 + opts.size() + payload.size()));
    ip[8] = 64;
    ip[9] = 6;
    put32(ip, 12, GuestIp);
    put32(ip, 16, dst);
    std::string tcp(20, '\0');
    put16(tcp, 0, port);
    put16(tcp, 2, dst_port);
    put32(tcp, 4, seq);
    put32(tcp, 8, ack);
    tcp[12] = static_cast<char>(((20 + opts.size()) / 4) << 4);
    tcp[13] = static_cast<char>(flags);
    put16(tcp, 14, window);
    return f + ip + tcp + opts + payload;
}

std::span<std::byte const> bytes(std::string const& s) { return std::as_bytes(std::span(s.data(), s.size())); }

struct Seen {
    std::uint32_t seq, ack;
    std::uint8_t flags;
    std::string payload;
};

// The next frame the stack sends, as TCP; checks its IPv4 and TCP checksums.
Seen next_tcp(MmdsStack& stack)
{
    REQUIRE(stack.pending());
    auto f = stack.pop();
    REQUIRE(f.size() >= 54);
    CHECK(get16(f, 12) == 0x0800);
    CHECK(std::memcmp(f.data(), GuestMac.data(), 6) == 0);
    std::size_t const total = get16(f, 16);
    std::uint32_t ipsum = 0;
    for (std::size_t i = 14; i < 34; i += 2)
        ipsum += get16(f, i);
    while (ipsum >> 16)
        ipsum = (ipsum & 0xffff) + (ipsum >> 16);
    CHECK(ipsum == 0xffff);
    std::size_t const tcp_len = total - 20;
    std::uint32_t sum = (MmdsDefaultIpv4 >> 16) + (MmdsDefaultIpv4 & 0xffff) + (GuestIp >> 16) + (GuestIp & 0xffff) + 6
        + static_cast<std::uint32_t>(tcp_len);
    for (std::size_t i = 34; i < 34 + tcp_len; i += 2)
        sum += i + 1 < 34 + tcp_len ? get16(f, i) : std::to_integer<unsigned>(f[i]) << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    CHECK(sum == 0xffff);
    std::size_t const data_off = (std::to_integer<unsigned>(f[34 + 12]) >> 4) * 4;
    Seen s { get32(f, 38), get32(f, 42), std::to_integer<std::uint8_t>(f[47]), {} };
    s.payload.assign(reinterpret_cast<char const*>(f.data()) + 34 + data_off, tcp_len - data_off);
    return s;
}

constexpr std::uint8_t FIN = 1, SYN = 2, RST = 4, PSH = 8, ACK = 16;

} // namespace

TEST_CASE("mmds store: PUT, PATCH and GET from the API, a refused change changes nothing")
{
    auto store = MmdsStore::create();
    CHECK(store->get() == "{}");
    REQUIRE(store->put(R"({"a":{"b":"c","d":"e"}})"));
    REQUIRE(store->patch(R"({"a":{"d":null,"f":"g"}})"));
    CHECK(store->get() == R"({"a":{"b":"c","f":"g"}})");
    CHECK_FALSE(store->put("[1,2]"));
    CHECK_FALSE(store->put("{broken"));
    CHECK_FALSE(store->patch("\"x\""));
    CHECK_FALSE(store->put("{\"big\":\"" + std::string(MmdsStore::MaxDataBytes, 'x') + "\"}"));
    CHECK(store->get() == R"({"a":{"b":"c","f":"g"}})");
}

TEST_CASE("mmds store: GET answers in IMDS text or JSON, 404, 405 and 501")
{
    auto store = sample_store();
    auto r = store->answer(get("/latest/meta-data/ami-id"), T0);
    CHECK(r.status == 200);
    CHECK(r.body == "ami-1");
    r = store->answer(get("/latest/meta-data/"), T0);
    CHECK(r.body == "ami-id\nnet/\nreservation-id");
    r = store->answer(get("/latest/meta-data", { { "accept", "application/json" } }), T0);
    CHECK(r.content_type == "application/json");
    CHECK(r.body == R"({"ami-id":"ami-1","net":{"a":"b"},"reservation-id":"r-2"})");
    CHECK(store->answer(get("/list/1", { { "accept", "application/json" } }), T0).body == "\"two\"");
    CHECK(store->answer(get("/list/0"), T0).status == 501);
    CHECK(store->answer(get("/latest/nothing"), T0).status == 404);
    CHECK(store->answer(get("/list/7"), T0).status == 404);
    CHECK(store->answer(get("/latest/meta-data/ami-id/deeper"), T0).status == 404);
    r = store->answer(MmdsRequest { "POST", "/latest", {} }, T0);
    CHECK(r.status == 405);
    CHECK(r.allow_header);
}

TEST_CASE("mmds store: session tokens, V2 refuses a GET without a live one, V1 only counts")
{
    auto store = sample_store(MmdsVersion::V2);
    CHECK(store->answer(get("/latest/meta-data/ami-id"), T0).status == 401);
    auto put = [&](std::string ttl, std::chrono::steady_clock::time_point at, bool forwarded = false) {
        MmdsRequest r { "PUT", "/latest/api/token", { { "x-metadata-token-ttl-seconds", ttl } } };
        if (forwarded)
            r.headers.emplace_back("x-forwarded-for", "10.0.0.9");
        return store->answer(r, at);
    };
    CHECK(put("0", T0).status == 400);
    CHECK(put("21601", T0).status == 400);
    CHECK(put("5x", T0).status == 400);
    CHECK(put("60", T0, true).status == 400);
    CHECK(store->answer(MmdsRequest { "PUT", "/latest/api/token", {} }, T0).status == 400);
    CHECK(store->answer(MmdsRequest { "PUT", "/elsewhere", { { "x-metadata-token-ttl-seconds", "5" } } }, T0).status == 404);
    auto token = put("60", T0);
    REQUIRE(token.status == 200);
    CHECK(token.body.size() == 48);
    CHECK(store->answer(get("/latest/meta-data/ami-id", { { "x-metadata-token", token.body } }), T0 + 59s).body == "ami-1");
    CHECK(store->answer(get("/latest/meta-data/ami-id", { { "x-aws-ec2-metadata-token", token.body } }), T0).status == 200);
    CHECK(store->answer(get("/latest/meta-data/ami-id", { { "x-metadata-token", token.body } }), T0 + 61s).status == 401);
    CHECK(store->answer(get("/latest/meta-data/ami-id", { { "x-metadata-token", "forged" } }), T0).status == 401);
    store->set_version(MmdsVersion::V1);
    CHECK(store->answer(get("/latest/meta-data/ami-id", { { "x-metadata-token", "forged" } }), T0).status == 200);
    CHECK(store->answer(get("/latest/meta-data/ami-id"), T0).status == 200);
    auto c = store->counters();
    CHECK(c.tokens_issued == 1);
    CHECK(c.invalid_token == 3);
    CHECK(c.no_token == 2);
}

TEST_CASE("mmds http: requests are parsed whole or not at all, malformed ones are errors")
{
    auto p = parse_http_request("GET /a HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\nGET /b");
    CHECK(p.error.empty());
    CHECK(p.used == std::string("GET /a HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n").size());
    CHECK(p.request.method == "GET");
    CHECK(p.request.path == "/a");
    REQUIRE(p.request.header("accept"));
    CHECK(*p.request.header("accept") == "application/json");
    CHECK_FALSE(p.close);
    CHECK(parse_http_request("GET /a HTTP/1.1\r\nHost: x\r\n").used == 0);
    CHECK(parse_http_request("PUT /t HTTP/1.1\r\nContent-Length: 4\r\n\r\nab").used == 0);
    CHECK(parse_http_request("PUT /t HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd").used > 0);
    CHECK(parse_http_request("GET /a HTTP/1.0\r\n\r\n").close);
    CHECK(parse_http_request("GET /a HTTP/1.1\r\nConnection: close\r\n\r\n").close);
    for (char const* bad : { "GET /a\r\n\r\n", "GET a HTTP/1.1\r\n\r\n", "GET /a HTTP/2\r\n\r\n", "get /a HTTP/1.1\r\n\r\n",
             "GET /a?x=1 HTTP/1.1\r\n\r\n", "GET /a HTTP/1.1\r\nNoColon\r\n\r\n", "GET /a HTTP/1.1\r\nContent-Length: x\r\n\r\n",
             "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "GET /a b HTTP/1.1\r\n\r\n" })
        CHECK_MESSAGE(!parse_http_request(bad).error.empty(), bad);
    CHECK(!parse_http_request(std::string(MmdsStack::MaxRequestBytes, 'A')).error.empty());
}

TEST_CASE("mmds stack: ARP for the service's address is answered, other frames are not its business")
{
    MmdsStack stack(sample_store());
    std::string arp = ether(0x0806);
    arp[0] = arp[1] = arp[2] = arp[3] = arp[4] = arp[5] = '\xff';
    std::string body(28, '\0');
    put16(body, 0, 1);
    put16(body, 2, 0x0800);
    body[4] = 6;
    body[5] = 4;
    put16(body, 6, 1);
    std::memcpy(body.data() + 8, GuestMac.data(), 6);
    put32(body, 14, GuestIp);
    put32(body, 24, MmdsDefaultIpv4);
    arp += body;
    REQUIRE(stack.classify(bytes(arp)));
    stack.handle(bytes(arp));
    REQUIRE(stack.pending());
    auto reply = stack.pop();
    REQUIRE(reply.size() == 60);
    CHECK(get16(reply, 20) == 2);
    CHECK(std::memcmp(reply.data() + 22, MmdsMac.data(), 6) == 0);
    CHECK(get32(reply, 28) == MmdsDefaultIpv4);
    CHECK(std::memcmp(reply.data() + 32, GuestMac.data(), 6) == 0);
    CHECK(get32(reply, 38) == GuestIp);
    // ARP for someone else, and IPv4 to another address: not claimed.
    put32(arp, 38, 0x0a000001);
    CHECK_FALSE(stack.classify(bytes(arp)));
    CHECK_FALSE(stack.classify(bytes(tcp_frame(1000, 1, 0, SYN, "", 65535, 0, 0x0a000001))));
    CHECK_FALSE(stack.classify(bytes(std::string(10, 'x'))));
}

TEST_CASE("mmds stack: a TCP conversation: handshake, request in pieces, an answer in MSS segments within the window, FIN")
{
    auto store = MmdsStore::create();
    REQUIRE(store->put(R"({"big":")" + std::string(3000, 'z') + R"(","small":"v"})"));
    MmdsStack stack(store);
    std::uint32_t const iss = 1000;
    stack.handle(bytes(tcp_frame(40000, iss, 0, SYN, "", 65535, 1000)));
    auto synack = next_tcp(stack);
    CHECK(synack.flags == (SYN | ACK));
    CHECK(synack.ack == iss + 1);
    std::uint32_t const server = synack.seq + 1;
    stack.handle(bytes(tcp_frame(40000, iss + 1, server, ACK, "")));
    CHECK_FALSE(stack.pending());

    std::string const req = "GET /small HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";
    stack.handle(bytes(tcp_frame(40000, iss + 1, server, ACK | PSH, req.substr(0, 10))));
    auto ack = next_tcp(stack);
    CHECK(ack.flags == ACK);
    CHECK(ack.ack == iss + 11);
    stack.handle(bytes(tcp_frame(40000, iss + 11, server, ACK | PSH, req.substr(10))));
    auto answer = next_tcp(stack);
    CHECK(answer.ack == iss + 1 + req.size());
    CHECK(answer.payload.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(answer.payload.ends_with("\r\n\r\nv"));
    std::uint32_t next = server + static_cast<std::uint32_t>(answer.payload.size());
    std::uint32_t gseq = iss + 1 + static_cast<std::uint32_t>(req.size());
    stack.handle(bytes(tcp_frame(40000, gseq, next, ACK, "")));
    CHECK_FALSE(stack.pending());

    // A 3000-byte answer with MSS 1000 and a 1500-byte window: two segments, then
    // the rest once the guest acknowledges.
    std::string const big = "GET /big HTTP/1.1\r\n\r\n";
    stack.handle(bytes(tcp_frame(40000, gseq, next, ACK | PSH, big, 1500)));
    gseq += static_cast<std::uint32_t>(big.size());
    std::string got;
    auto s1 = next_tcp(stack);
    auto s2 = next_tcp(stack);
    CHECK(s1.payload.size() == 1000);
    CHECK(s2.payload.size() == 500);
    CHECK_FALSE(stack.pending());
    got = s1.payload + s2.payload;
    next += 1500;
    while (true) {
        stack.handle(bytes(tcp_frame(40000, gseq, next, ACK, "", 1500)));
        if (!stack.pending())
            break;
        auto s = next_tcp(stack);
        CHECK(s.seq == next);
        got += s.payload;
        next += static_cast<std::uint32_t>(s.payload.size());
        while (stack.pending()) {
            auto more = next_tcp(stack);
            got += more.payload;
            next += static_cast<std::uint32_t>(more.payload.size());
        }
    }
    CHECK(got.ends_with(std::string(3000, 'z')));

    // The guest closes: the stack acknowledges and closes too; the last ACK ends it.
    stack.handle(bytes(tcp_frame(40000, gseq, next, ACK | FIN, "")));
    auto fin = next_tcp(stack);
    CHECK((fin.flags & FIN) != 0);
    CHECK(fin.ack == gseq + 1);
    stack.handle(bytes(tcp_frame(40000, gseq + 1, next + 1, ACK, "")));
    CHECK_FALSE(stack.pending());
    // The connection is gone: a stray segment on it is reset.
    stack.handle(bytes(tcp_frame(40000, gseq + 1, next + 1, ACK, "x")));
    CHECK((next_tcp(stack).flags & RST) != 0);
}

TEST_CASE("mmds stack: Connection: close ends after the answer, a lost answer is sent again on a repeated request")
{
    MmdsStack stack(sample_store());
    stack.handle(bytes(tcp_frame(41000, 5, 0, SYN, "")));
    auto synack = next_tcp(stack);
    std::uint32_t const server = synack.seq + 1;
    stack.handle(bytes(tcp_frame(41000, 6, server, ACK, "")));
    std::string const req = "GET /latest/meta-data/ami-id HTTP/1.1\r\nConnection: close\r\n\r\n";
    stack.handle(bytes(tcp_frame(41000, 6, server, ACK | PSH, req)));
    auto answer = next_tcp(stack);
    CHECK(answer.payload.find("Connection: close") != std::string::npos);
    auto fin = next_tcp(stack);
    CHECK((fin.flags & FIN) != 0);
    // The guest saw neither and sends its request again: both come again.
    stack.handle(bytes(tcp_frame(41000, 6, server, ACK | PSH, req)));
    auto again = next_tcp(stack);
    CHECK(again.seq == answer.seq);
    CHECK(again.payload == answer.payload);
    CHECK((next_tcp(stack).flags & FIN) != 0);
}

TEST_CASE("mmds stack: hostile frames are dropped or reset, never served, limits hold")
{
    auto store = sample_store();
    MmdsStack stack(store);
    // Truncated, wrong version, bad lengths, fragments, other protocols and ports.
    std::string good = tcp_frame(42000, 1, 0, SYN, "");
    for (std::size_t n = 0; n < good.size(); ++n)
        stack.handle(bytes(good.substr(0, n)));
    std::string v6 = good;
    v6[14] = 0x65;
    stack.handle(bytes(v6));
    std::string frag = good;
    frag[20] = 0x20; // more fragments
    stack.handle(bytes(frag));
    std::string udp = good;
    udp[23] = 17;
    stack.handle(bytes(udp));
    std::string long_len = good;
    put16(long_len, 16, 1500);
    stack.handle(bytes(long_len));
    std::string bad_off = good;
    bad_off[34 + 12] = static_cast<char>(0xf0); // data offset 60 > segment
    stack.handle(bytes(bad_off));
    stack.handle(bytes(tcp_frame(42000, 1, 0, SYN, "", 65535, 0, MmdsDefaultIpv4, 81)));
    stack.handle(bytes(good), true); // GSO
    CHECK_FALSE(stack.pending());
    CHECK(stack.counters().dropped >= good.size() + 7);

    // A request larger than MaxRequestBytes resets the connection.
    stack.handle(bytes(good));
    std::uint32_t const server = next_tcp(stack).seq + 1;
    stack.handle(bytes(tcp_frame(42000, 2, server, ACK, "")));
    std::uint32_t seq = 2;
    std::string const chunk(1000, 'A');
    bool reset = false;
    for (int i = 0; i < 6 && !reset; ++i) {
        stack.handle(bytes(tcp_frame(42000, seq, server, ACK, chunk)));
        seq += 1000;
        while (stack.pending())
            reset = reset || (next_tcp(stack).flags & RST) != 0;
    }
    CHECK(reset);
    // More connections than MaxConnections: the oldest go; the queue stays bounded.
    for (std::uint16_t port = 1; port < 3 * MmdsStack::MaxConnections; ++port)
        stack.handle(bytes(tcp_frame(port, 7, 0, SYN, "")));
    std::size_t queued = 0;
    while (stack.pending()) {
        stack.pop();
        ++queued;
    }
    CHECK(queued == 3 * MmdsStack::MaxConnections - 1);
    CHECK(stack.counters().resets >= 2 * MmdsStack::MaxConnections - 1);
    for (std::size_t i = 0; i < MmdsStack::MaxQueuedFrames + 10; ++i)
        stack.handle(bytes(tcp_frame(50000, 1, 12345, ACK, "")));
    queued = 0;
    while (stack.pending()) {
        stack.pop();
        ++queued;
    }
    CHECK(queued == MmdsStack::MaxQueuedFrames);
}
