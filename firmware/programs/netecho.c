/* netecho: a network peer in firmware for testing virtio-net. It answers ARP
 * requests for its address, ICMP echo requests (ping) and echoes every UDP
 * datagram back to its sender; a datagram whose payload is "quit" is answered
 * with "bye" and ends the program with exit 0. `ip=A.B.C.D` (default 10.0.0.2)
 * is its IPv4 address; `timeout_s=N` (default 120) bounds the run: the program
 * exits 5 after that long without a "quit". Prints `netecho: ready ...` once the
 * device is up and counters at the end. Exit 2: no network device.
 * Frames it cannot parse, or addressed elsewhere, are ignored; every checksum it
 * receives is verified and every one it sends computed (no offloads). */
#include "io.h"
#include "net.h"
#include "runtime.h"

const char rt_program_name[] = "netecho";

static struct vnet g_net;
static uint8_t g_ip[4] = { 10, 0, 0, 2 };
static uint8_t g_frame[VNET_FRAME_MAX];
static uint8_t g_reply[VNET_FRAME_MAX];
static uint64_t g_arp, g_icmp, g_udp, g_ignored;

static uint16_t get16(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t* p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* The Internet checksum (RFC 1071) over len bytes, starting from sum. */
static uint32_t sum_bytes(uint32_t sum, const uint8_t* p, uint32_t len)
{
    for (uint32_t i = 0; i + 1 < len; i += 2)
        sum += get16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}
static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static bool parse_ip(const char* s, size_t len, uint8_t out[4])
{
    size_t at = 0;
    for (int i = 0; i < 4; ++i) {
        uint64_t v = 0;
        size_t used = parse_u64(s + at, len - at, &v);
        if (used == 0 || v > 255)
            return false;
        out[i] = (uint8_t)v;
        at += used;
        if (i < 3) {
            if (at >= len || s[at] != '.')
                return false;
            ++at;
        }
    }
    return at == len;
}

static void send_reply(uint32_t len)
{
    if (vnet_send(&g_net, g_reply, len) != 0)
        printf("netecho: a reply was not taken by the device\n");
}

static void answer_arp(const uint8_t* f, uint32_t len)
{
    const uint8_t* a = f + 14;
    if (len < 42 || get16(a) != 1 || get16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 || get16(a + 6) != 1
        || memcmp(a + 24, g_ip, 4) != 0) {
        ++g_ignored;
        return;
    }
    uint8_t* r = g_reply;
    memcpy(r, f + 6, 6);
    memcpy(r + 6, g_net.mac, 6);
    put16(r + 12, 0x0806);
    uint8_t* ra = r + 14;
    put16(ra, 1);
    put16(ra + 2, 0x0800);
    ra[4] = 6;
    ra[5] = 4;
    put16(ra + 6, 2); /* reply */
    memcpy(ra + 8, g_net.mac, 6);
    memcpy(ra + 14, g_ip, 4);
    memcpy(ra + 18, a + 8, 6);  /* the asker's MAC */
    memcpy(ra + 24, a + 14, 4); /* and IP */
    memset(r + 42, 0, 18);      /* pad to the 60-byte minimum */
    ++g_arp;
    send_reply(60);
}

/* Returns 1 when the datagram was "quit". */
static int answer_ipv4(const uint8_t* f, uint32_t len)
{
    const uint8_t* ip = f + 14;
    if (len < 34 || (ip[0] >> 4) != 4) {
        ++g_ignored;
        return 0;
    }
    uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
    uint32_t total = get16(ip + 2);
    if (ihl < 20 || total < ihl || 14 + total > len || memcmp(ip + 16, g_ip, 4) != 0 || fold(sum_bytes(0, ip, ihl)) != 0
        || (get16(ip + 6) & 0x3fff) != 0 /* fragments */) {
        ++g_ignored;
        return 0;
    }
    const uint8_t* l4 = ip + ihl;
    uint32_t l4_len = total - ihl;
    uint8_t* r = g_reply;
    uint8_t* rip = r + 14;
    uint8_t* rl4 = rip + 20;
    int quit = 0;
    uint32_t rl4_len = 0;
    if (ip[9] == 1) { /* ICMP */
        if (l4_len < 8 || l4[0] != 8 || fold(sum_bytes(0, l4, l4_len)) != 0) {
            ++g_ignored;
            return 0;
        }
        memcpy(rl4, l4, l4_len);
        rl4[0] = 0; /* echo reply */
        put16(rl4 + 2, 0);
        put16(rl4 + 2, fold(sum_bytes(0, rl4, l4_len)));
        rl4_len = l4_len;
        ++g_icmp;
    } else if (ip[9] == 17) { /* UDP */
        if (l4_len < 8 || get16(l4 + 4) < 8 || get16(l4 + 4) > l4_len) {
            ++g_ignored;
            return 0;
        }
        uint32_t ulen = get16(l4 + 4);
        if (get16(l4 + 6) != 0) {
            uint32_t pseudo = sum_bytes(0, ip + 12, 8) + 17 + ulen;
            if (fold(sum_bytes(pseudo, l4, ulen)) != 0) {
                ++g_ignored;
                return 0;
            }
        }
        const uint8_t* payload = l4 + 8;
        uint32_t plen = ulen - 8;
        quit = plen >= 4 && memcmp(payload, "quit", 4) == 0;
        put16(rl4, get16(l4 + 2));
        put16(rl4 + 2, get16(l4));
        if (quit) {
            memcpy(rl4 + 8, "bye\n", 4);
            plen = 4;
        } else {
            memcpy(rl4 + 8, payload, plen);
        }
        put16(rl4 + 4, (uint16_t)(8 + plen));
        put16(rl4 + 6, 0);
        rl4_len = 8 + plen;
        ++g_udp;
    } else {
        ++g_ignored;
        return 0;
    }
    memcpy(r, f + 6, 6);
    memcpy(r + 6, g_net.mac, 6);
    put16(r + 12, 0x0800);
    rip[0] = 0x45;
    rip[1] = 0;
    put16(rip + 2, (uint16_t)(20 + rl4_len));
    put16(rip + 4, get16(ip + 4));
    put16(rip + 6, 0x4000); /* don't fragment */
    rip[8] = 64;
    rip[9] = ip[9];
    put16(rip + 10, 0);
    memcpy(rip + 12, g_ip, 4);
    memcpy(rip + 16, ip + 12, 4);
    put16(rip + 10, fold(sum_bytes(0, rip, 20)));
    if (ip[9] == 17) {
        uint32_t pseudo = sum_bytes(0, rip + 12, 8) + 17 + rl4_len;
        uint16_t c = fold(sum_bytes(pseudo, rl4, rl4_len));
        put16(rl4 + 6, c ? c : 0xffff);
    }
    uint32_t out = 14 + 20 + rl4_len;
    if (out < 60) {
        memset(r + out, 0, 60 - out);
        out = 60;
    }
    send_reply(out);
    return quit;
}

int main(const char* cmdline)
{
    (void)cmdline;
    const char* v;
    size_t len;
    if (cmdline_get("ip", &v, &len) && !parse_ip(v, len, g_ip))
        rt_fail(3, "ip= must be an IPv4 address A.B.C.D");
    uint64_t timeout_s = cmdline_u64("timeout_s", 120);
    if (vnet_open(&g_net) != 0)
        rt_fail(2, "no virtio-net device");
    printf("netecho: ready ip %u.%u.%u.%u\n", g_ip[0], g_ip[1], g_ip[2], g_ip[3]);
    uint64_t deadline = rdtsc() + timeout_s * 1000 * rt_tsc_khz();
    int code = 5;
    while (rdtsc() < deadline) {
        uint32_t n = vnet_receive(&g_net, g_frame);
        if (n == 0) {
            cpu_relax();
            continue;
        }
        if (n < 14) {
            ++g_ignored;
            continue;
        }
        uint16_t type = get16(g_frame + 12);
        if (type == 0x0806) {
            answer_arp(g_frame, n);
        } else if (type == 0x0800) {
            if (answer_ipv4(g_frame, n)) {
                code = 0;
                break;
            }
        } else {
            ++g_ignored;
        }
    }
    printf("netecho: %s rx %lu tx %lu arp %lu icmp %lu udp %lu ignored %lu dropped %lu\n",
           code == 0 ? "done" : "FAIL: timed out", (unsigned long)g_net.rx_packets, (unsigned long)g_net.tx_packets,
           (unsigned long)g_arp, (unsigned long)g_icmp, (unsigned long)g_udp, (unsigned long)g_ignored,
           (unsigned long)g_net.rx_dropped);
    return code;
}
