// Numbers in messages: hex(0x100000) is "0x100000", as the boot code and its errors
// write guest addresses. One definition for every module (it used to be three
// private copies, which collided once files were compiled in batches).
// Threading: a pure function.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace strata {

inline std::string hex(std::uint64_t v)
{
    char b[24];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
}

} // namespace strata
