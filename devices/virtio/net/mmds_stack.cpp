#include "devices/virtio/net/mmds_stack.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <random>
#include <sys/random.h>

namespace strata::virtio::net {

namespace {

constexpr std::uint16_t EtherArp = 0x0806;
constexpr std::uint16_t EtherIpv4 = 0x0800;
constexpr std::uint8_t ProtoTcp = 6;
constexpr std::uint16_t HttpPort = 80;
constexpr std::size_t EthHeader = 14;

namespace tcp {
constexpr std::uint8_t Fin = 0x01;
constexpr std::uint8_t Syn = 0x02;
constexpr std::uint8_t Rst = 0x04;
constexpr std::uint8_t Psh = 0x08;
constexpr std::uint8_t Ack = 0x10;
} // namespace tcp

constexpr std::uint16_t OurMss = 1460;
constexpr std::uint16_t OurWindow = 65535;
// A connection parses no further request while this much of its answers is unsent.
constexpr std::size_t MaxPendingReply = 128 * 1024;

std::uint8_t byte_at(std::span<std::byte const> f, std::size_t at) { return std::to_integer<std::uint8_t>(f[at]); }
std::uint16_t get16(std::span<std::byte const> f, std::size_t at)
{
    return static_cast<std::uint16_t>((byte_at(f, at) << 8) | byte_at(f, at + 1));
}
std::uint32_t get32(std::span<std::byte const> f, std::size_t at)
{
    return (std::uint32_t { get16(f, at) } << 16) | get16(f, at + 2);
}
void put16(std::vector<std::byte>& f, std::size_t at, std::uint16_t v)
{
    f[at] = std::byte(static_cast<std::uint8_t>(v >> 8));
    f[at + 1] = std::byte(static_cast<std::uint8_t>(v));
}
void put32(std::vector<std::byte>& f, std::size_t at, std::uint32_t v)
{
    put16(f, at, static_cast<std::uint16_t>(v >> 16));
    put16(f, at + 2, static_cast<std::uint16_t>(v));
}
void put_mac(std::vector<std::byte>& f, std::size_t at, MacAddress const& mac)
{
    for (std::size_t i = 0; i < mac.size(); ++i)
        f[at + i] = std::byte(mac[i]);
}
MacAddress get_mac(std::span<std::byte const> f, std::size_t at)
{
    MacAddress mac {};
    for (std::size_t i = 0; i < mac.size(); ++i)
        mac[i] = byte_at(f, at + i);
    return mac;
}

// The Internet checksum's one's-complement sum, folded later.
std::uint32_t sum16(std::span<std::byte const> data, std::uint32_t sum = 0)
{
    std::size_t i = 0;
    for (; i + 1 < data.size(); i += 2)
        sum += get16(data, i);
    if (i < data.size())
        sum += std::uint32_t { byte_at(data, i) } << 8;
    return sum;
}
std::uint16_t fold(std::uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum & 0xffff);
}



} // namespace

struct MmdsStack::Segment {
    MacAddress mac;
    std::uint32_t ip;
    std::uint16_t port;
    std::uint32_t seq, ack;
    std::uint8_t flags;
    std::uint16_t window;
    std::uint16_t mss; // 0: no option
    std::span<std::byte const> payload;
};

struct MmdsStack::Conn {
    MacAddress mac;
    std::uint32_t ip;
    std::uint16_t port;
    bool established { false };
    std::uint32_t iss, snd_una, snd_nxt, rcv_nxt;
    std::uint16_t window { 0 };
    std::uint16_t mss { 536 };
    std::string request; // received, not yet answered
    std::string out;     // answer bytes from snd_una on (sent or not)
    bool close_after { false }; // send FIN once `out` is sent
    bool fin_sent { false }, fin_acked { false }, fin_received { false };
    unsigned dup_acks { 0 };
    std::uint64_t last_used { 0 };
};

MmdsStack::MmdsStack(std::shared_ptr<MmdsStore> store, std::uint32_t ipv4)
    : m_store(std::move(store))
    , m_ipv4(ipv4)
{
    std::uint32_t seed = 0;
    if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof seed))
        seed = static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    m_random.seed(seed);
}

MmdsStack::~MmdsStack() = default;

bool MmdsStack::classify(std::span<std::byte const> prefix) const
{
    if (prefix.size() < EthHeader)
        return false;
    auto const type = get16(prefix, 12);
    if (type == EtherArp)
        return prefix.size() >= 42 && get32(prefix, 38) == m_ipv4;
    if (type == EtherIpv4)
        return prefix.size() >= 34 && get32(prefix, 30) == m_ipv4;
    return false;
}

void MmdsStack::handle(std::span<std::byte const> frame, bool gso)
{
    ++m_counters.frames_in;
    if (gso || frame.size() > MaxFrameBytes || frame.size() < EthHeader) {
        ++m_counters.dropped;
        return;
    }
    auto const type = get16(frame, 12);
    if (type == EtherArp) {
        handle_arp(frame);
        return;
    }
    // IPv4: version 4, a header of 20..60 bytes inside the frame, a total length
    // that fits the frame, not a fragment, to the service's address.
    if (type != EtherIpv4 || frame.size() < EthHeader + 20) {
        ++m_counters.dropped;
        return;
    }
    auto const vihl = byte_at(frame, EthHeader);
    std::size_t const ihl = std::size_t { vihl & 0x0fu } * 4;
    std::size_t const total = get16(frame, EthHeader + 2);
    bool const fragment = (get16(frame, EthHeader + 6) & 0x3fff) != 0;
    if ((vihl >> 4) != 4 || ihl < 20 || total < ihl || EthHeader + total > frame.size() || fragment
        || get32(frame, EthHeader + 16) != m_ipv4 || byte_at(frame, EthHeader + 9) != ProtoTcp) {
        ++m_counters.dropped;
        return;
    }
    handle_tcp(frame, EthHeader, ihl, total);
}

void MmdsStack::handle_arp(std::span<std::byte const> frame)
{
    // Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4.
    if (frame.size() < 42 || get16(frame, 14) != 1 || get16(frame, 16) != EtherIpv4 || byte_at(frame, 18) != 6
        || byte_at(frame, 19) != 4 || get32(frame, 38) != m_ipv4 || get16(frame, 20) != 1) {
        ++m_counters.dropped; // replies and announcements about the address are taken, not answered
        return;
    }
    MacAddress const sender_mac = get_mac(frame, 22);
    std::uint32_t const sender_ip = get32(frame, 28);
    std::vector<std::byte> reply(60); // the minimum Ethernet frame, zero padded
    put_mac(reply, 0, sender_mac);
    put_mac(reply, 6, MmdsMac);
    put16(reply, 12, EtherArp);
    put16(reply, 14, 1);
    put16(reply, 16, EtherIpv4);
    reply[18] = std::byte { 6 };
    reply[19] = std::byte { 4 };
    put16(reply, 20, 2);
    put_mac(reply, 22, MmdsMac);
    put32(reply, 28, m_ipv4);
    put_mac(reply, 32, sender_mac);
    put32(reply, 38, sender_ip);
    queue(std::move(reply));
}

void MmdsStack::handle_tcp(std::span<std::byte const> frame, std::size_t ip_offset, std::size_t ip_header, std::size_t ip_total)
{
    std::size_t const off = ip_offset + ip_header;
    std::size_t const tcp_len = ip_total - ip_header;
    if (tcp_len < 20) {
        ++m_counters.dropped;
        return;
    }
    std::size_t const data_off = static_cast<std::size_t>(byte_at(frame, off + 12) >> 4) * 4;
    if (data_off < 20 || data_off > tcp_len || get16(frame, off + 2) != HttpPort) {
        ++m_counters.dropped;
        return;
    }
    Segment seg {};
    seg.mac = get_mac(frame, 6);
    seg.ip = get32(frame, ip_offset + 12);
    seg.port = get16(frame, off);
    seg.seq = get32(frame, off + 4);
    seg.ack = get32(frame, off + 8);
    seg.flags = byte_at(frame, off + 13);
    seg.window = get16(frame, off + 14);
    // Options: only MSS matters; a malformed list ends the walk.
    for (std::size_t i = off + 20, end = off + data_off; i < end;) {
        auto const kind = byte_at(frame, i);
        if (kind == 0)
            break;
        if (kind == 1) {
            ++i;
            continue;
        }
        if (i + 1 >= end)
            break;
        std::size_t const len = byte_at(frame, i + 1);
        if (len < 2 || i + len > end)
            break;
        if (kind == 2 && len == 4)
            seg.mss = get16(frame, i + 2);
        i += len;
    }
    seg.payload = frame.subspan(off + data_off, tcp_len - data_off);
    on_segment(seg);
}

MmdsStack::Conn* MmdsStack::find(std::uint32_t ip, std::uint16_t port)
{
    for (auto& c : m_conns)
        if (c->ip == ip && c->port == port)
            return c.get();
    return nullptr;
}

void MmdsStack::drop(Conn* conn)
{
    std::erase_if(m_conns, [&](auto const& c) { return c.get() == conn; });
}

void MmdsStack::on_segment(Segment const& seg)
{
    std::uint32_t const seg_len = static_cast<std::uint32_t>(seg.payload.size()) + ((seg.flags & tcp::Syn) ? 1u : 0u)
        + ((seg.flags & tcp::Fin) ? 1u : 0u);
    Conn* conn = find(seg.ip, seg.port);
    if (seg.flags & tcp::Rst) {
        if (conn)
            drop(conn);
        return;
    }
    if (conn && (seg.flags & tcp::Syn)) {
        if (!conn->established && seg.seq + 1 == conn->rcv_nxt && !(seg.flags & tcp::Ack)) {
            // The guest did not see our SYN-ACK: again.
            send_tcp(*conn, conn->iss, tcp::Syn | tcp::Ack, {}, true);
            return;
        }
        // A new connection on a tuple still in use: the old one is gone.
        ++m_counters.resets;
        drop(conn);
        conn = nullptr;
    }
    if (!conn) {
        if ((seg.flags & tcp::Syn) && !(seg.flags & tcp::Ack)) {
            if (m_conns.size() >= MaxConnections) {
                auto oldest = std::min_element(m_conns.begin(), m_conns.end(),
                    [](auto const& a, auto const& b) { return a->last_used < b->last_used; });
                ++m_counters.resets;
                m_conns.erase(oldest);
            }
            auto fresh = std::make_unique<Conn>();
            fresh->mac = seg.mac;
            fresh->ip = seg.ip;
            fresh->port = seg.port;
            fresh->iss = static_cast<std::uint32_t>(m_random());
            fresh->snd_una = fresh->iss;
            fresh->snd_nxt = fresh->iss + 1;
            fresh->rcv_nxt = seg.seq + 1;
            fresh->window = seg.window;
            fresh->mss = seg.mss == 0 ? std::uint16_t { 536 } : std::clamp<std::uint16_t>(seg.mss, 64, OurMss);
            fresh->last_used = ++m_clock;
            send_tcp(*fresh, fresh->iss, tcp::Syn | tcp::Ack, {}, true);
            m_conns.push_back(std::move(fresh));
            return;
        }
        // Nothing to do with any connection: a reset (RFC 793's rules for a closed port).
        if (seg.flags & tcp::Ack)
            send_reset(seg.mac, seg.ip, seg.port, seg.ack, 0, false);
        else
            send_reset(seg.mac, seg.ip, seg.port, 0, seg.seq + seg_len, true);
        return;
    }
    conn->last_used = ++m_clock;
    conn->mac = seg.mac;
    if (!(seg.flags & tcp::Ack))
        return; // after the SYN every segment carries an ACK

    std::uint32_t const in_flight = conn->snd_nxt - conn->snd_una;
    std::uint32_t const acked = seg.ack - conn->snd_una;
    if (acked > 0 && acked <= in_flight) {
        std::uint32_t n = acked;
        if (!conn->established) {
            conn->established = true; // our SYN (one sequence number) is acknowledged
            --n;
        }
        std::size_t const data = std::min<std::size_t>(n, conn->out.size());
        conn->out.erase(0, data);
        n -= static_cast<std::uint32_t>(data);
        if (n > 0 && conn->fin_sent)
            conn->fin_acked = true;
        conn->snd_una = seg.ack;
        conn->dup_acks = 0;
    } else if (acked == 0 && seg.payload.empty() && !(seg.flags & tcp::Fin) && in_flight > 0 && seg.window == conn->window
        && conn->established) {
        // Duplicate ACKs: the guest lost something we sent; send it all again.
        if (++conn->dup_acks >= 2) {
            conn->dup_acks = 0;
            rewind(*conn);
        }
    }
    conn->window = seg.window;
    if (!conn->established)
        return;

    bool need_ack = false;
    if (!seg.payload.empty() || (seg.flags & tcp::Fin)) {
        need_ack = true;
        if (seg.seq == conn->rcv_nxt) {
            if (!seg.payload.empty()) {
                if (conn->fin_received || conn->request.size() + seg.payload.size() > MaxRequestBytes) {
                    ++m_counters.resets;
                    send_reset(conn->mac, conn->ip, conn->port, conn->snd_nxt, 0, false);
                    drop(conn);
                    return;
                }
                // SAFETY: reading the frame's bytes as characters for the HTTP parser.
                conn->request.append(reinterpret_cast<char const*>(seg.payload.data()), seg.payload.size());
                conn->rcv_nxt += static_cast<std::uint32_t>(seg.payload.size());
            }
            if ((seg.flags & tcp::Fin) && !conn->fin_received) {
                conn->fin_received = true;
                conn->rcv_nxt += 1;
            }
        } else {
            // Out of order or repeated: acknowledge what we have, resend what is unacknowledged.
            rewind(*conn);
        }
    }
    serve_requests(*conn);
    std::uint32_t const before = conn->snd_nxt;
    send_data(*conn);
    if (conn->snd_nxt == before && need_ack)
        send_tcp(*conn, conn->snd_nxt, tcp::Ack, {}, false);
    if (conn->fin_sent && conn->fin_acked && conn->fin_received)
        drop(conn);
}

void MmdsStack::rewind(Conn& conn)
{
    conn.snd_nxt = conn.snd_una;
    if (conn.fin_sent && !conn.fin_acked)
        conn.fin_sent = false; // sent again after the data
}

void MmdsStack::serve_requests(Conn& conn)
{
    while (!conn.close_after && conn.out.size() < MaxPendingReply) {
        HttpParse parsed = parse_http_request(conn.request);
        if (!parsed.error.empty()) {
            conn.out += format_http_reply(MmdsReply { 400, "text/plain", parsed.error + "\n", false }, true);
            conn.request.clear();
            conn.close_after = true;
            break;
        }
        if (parsed.used == 0)
            break;
        conn.request.erase(0, parsed.used);
        MmdsReply const reply = m_store->answer(parsed.request, std::chrono::steady_clock::now());
        conn.out += format_http_reply(reply, parsed.close);
        if (parsed.close)
            conn.close_after = true;
    }
    if (conn.fin_received)
        conn.close_after = true; // the guest sends no more: answer what came, then close
}

void MmdsStack::send_data(Conn& conn)
{
    while (!conn.fin_sent && m_out.size() < MaxQueuedFrames) {
        std::size_t const sent = conn.snd_nxt - conn.snd_una;
        if (sent >= conn.out.size()) {
            if (conn.close_after) {
                send_tcp(conn, conn.snd_nxt, tcp::Fin | tcp::Ack, {}, false);
                conn.snd_nxt += 1;
                conn.fin_sent = true;
            }
            return;
        }
        if (sent >= conn.window)
            return; // the guest's window is full: its next ACK moves it
        std::size_t const n = std::min({ std::size_t { conn.mss }, conn.out.size() - sent, conn.window - sent });
        // SAFETY: the answer's characters as bytes for the frame.
        std::span<std::byte const> const piece(reinterpret_cast<std::byte const*>(conn.out.data()) + sent, n);
        send_tcp(conn, conn.snd_nxt, tcp::Ack | tcp::Psh, piece, false);
        conn.snd_nxt += static_cast<std::uint32_t>(n);
    }
}

std::vector<std::byte> MmdsStack::tcp_frame(MacAddress const& mac, std::uint32_t ip, std::uint16_t port, std::uint32_t seq,
    std::uint32_t ack, std::uint8_t flags, std::span<std::byte const> payload, bool mss_option)
{
    std::size_t const tcp_header = mss_option ? 24 : 20;
    std::size_t const ip_total = 20 + tcp_header + payload.size();
    std::vector<std::byte> f(std::max<std::size_t>(EthHeader + ip_total, 60));
    put_mac(f, 0, mac);
    put_mac(f, 6, MmdsMac);
    put16(f, 12, EtherIpv4);
    std::size_t const ip_at = EthHeader;
    f[ip_at] = std::byte { 0x45 };
    put16(f, ip_at + 2, static_cast<std::uint16_t>(ip_total));
    put16(f, ip_at + 4, m_ip_id++);
    put16(f, ip_at + 6, 0x4000); // don't fragment
    f[ip_at + 8] = std::byte { 64 };
    f[ip_at + 9] = std::byte { ProtoTcp };
    put32(f, ip_at + 12, m_ipv4);
    put32(f, ip_at + 16, ip);
    put16(f, ip_at + 10, fold(sum16(std::span<std::byte const>(f).subspan(ip_at, 20))));
    std::size_t const t = ip_at + 20;
    put16(f, t, HttpPort);
    put16(f, t + 2, port);
    put32(f, t + 4, seq);
    put32(f, t + 8, ack);
    f[t + 12] = std::byte(static_cast<std::uint8_t>((tcp_header / 4) << 4));
    f[t + 13] = std::byte { flags };
    put16(f, t + 14, OurWindow);
    if (mss_option) {
        f[t + 20] = std::byte { 2 };
        f[t + 21] = std::byte { 4 };
        put16(f, t + 22, OurMss);
    }
    if (!payload.empty())
        std::memcpy(f.data() + t + tcp_header, payload.data(), payload.size());
    // The pseudo-header: source, destination, protocol, TCP length.
    std::uint32_t sum = (m_ipv4 >> 16) + (m_ipv4 & 0xffff) + (ip >> 16) + (ip & 0xffff) + ProtoTcp
        + static_cast<std::uint32_t>(tcp_header + payload.size());
    sum = sum16(std::span<std::byte const>(f).subspan(t, tcp_header + payload.size()), sum);
    put16(f, t + 16, fold(sum));
    return f;
}

void MmdsStack::send_tcp(Conn const& conn, std::uint32_t seq, std::uint8_t flags, std::span<std::byte const> payload, bool mss_option)
{
    queue(tcp_frame(conn.mac, conn.ip, conn.port, seq, conn.rcv_nxt, flags, payload, mss_option));
}

void MmdsStack::send_reset(MacAddress const& mac, std::uint32_t ip, std::uint16_t port, std::uint32_t seq, std::uint32_t ack, bool with_ack)
{
    queue(tcp_frame(mac, ip, port, seq, with_ack ? ack : 0, static_cast<std::uint8_t>(tcp::Rst | (with_ack ? tcp::Ack : 0)), {}, false));
}

void MmdsStack::queue(std::vector<std::byte> frame)
{
    if (m_out.size() >= MaxQueuedFrames) {
        ++m_counters.dropped;
        return;
    }
    ++m_counters.frames_out;
    m_out.push_back(std::move(frame));
}

std::vector<std::byte> MmdsStack::pop()
{
    if (m_out.empty())
        return {};
    auto frame = std::move(m_out.front());
    m_out.pop_front();
    return frame;
}

} // namespace strata::virtio::net
