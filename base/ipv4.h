// IPv4 addresses as text: the link-local ones the metadata service may use
// (169.254.1.0 to 169.254.254.255, as RFC 3927 reserves the first and last 256)
// and the dotted form of any. Addresses are host-order integers.
// Threading: pure functions.
#pragma once

#include "base/result.h"

#include <cstdint>
#include <string>

namespace strata {

[[nodiscard]] Result<std::uint32_t> parse_link_local_ipv4(std::string const& text);
std::string format_ipv4(std::uint32_t ip);

} // namespace strata
