#include "devices/virtio/net/config.h"

#include <cstdio>
#include <random>

namespace strata::virtio::net {

namespace {

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

} // namespace

std::optional<MacAddress> parse_mac(std::string const& text)
{
    if (text.size() != 17)
        return std::nullopt;
    MacAddress mac {};
    for (std::size_t i = 0; i < 6; ++i) {
        int hi = hex_digit(text[3 * i]);
        int lo = hex_digit(text[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
            return std::nullopt;
        mac[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    if (mac[0] & 1)
        return std::nullopt; // multicast: never a NIC's own address
    return mac;
}

std::string format_mac(MacAddress const& mac)
{
    char out[18];
    std::snprintf(out, sizeof out, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return out;
}

MacAddress random_mac()
{
    std::random_device rd;
    MacAddress mac {};
    for (auto& b : mac)
        b = static_cast<std::uint8_t>(rd());
    // Locally administered (bit 1), unicast (bit 0 clear).
    mac[0] = static_cast<std::uint8_t>((mac[0] & 0xfc) | 0x02);
    return mac;
}

} // namespace strata::virtio::net
