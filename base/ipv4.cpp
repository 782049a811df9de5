#include "base/ipv4.h"

#include <string>

namespace strata {

Result<std::uint32_t> parse_link_local_ipv4(std::string const& text)
{
    unsigned parts[4];
    std::size_t at = 0;
    for (int i = 0; i < 4; ++i) {
        std::size_t end = at;
        while (end < text.size() && end - at < 4 && text[end] >= '0' && text[end] <= '9')
            ++end;
        if (end == at || end - at > 3 || (i < 3 && (end >= text.size() || text[end] != '.')) || (i == 3 && end != text.size()))
            return make_error(ErrorKind::Usage, "'" + text + "' is not an IPv4 address");
        parts[i] = static_cast<unsigned>(std::stoul(text.substr(at, end - at)));
        if (parts[i] > 255)
            return make_error(ErrorKind::Usage, "'" + text + "' is not an IPv4 address");
        at = end + 1;
    }
    if (parts[0] != 169 || parts[1] != 254 || parts[2] == 0 || parts[2] == 255)
        return make_error(ErrorKind::Usage, "the address must be link-local, 169.254.1.0 to 169.254.254.255; not " + text);
    return (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3];
}

std::string format_ipv4(std::uint32_t ip)
{
    return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 255) + "." + std::to_string((ip >> 8) & 255) + "."
        + std::to_string(ip & 255);
}

} // namespace strata
