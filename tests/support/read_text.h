// Test support: a whole file's text, the one read the helpers that follow guest
// logs (seqwriter_progress.h, memwriter_progress.h, strata_home.h) share.
//
// Threading: a plain function, any thread.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace strata::test {

// The file's text; an empty string when it does not exist or cannot be read.
inline std::string read_text(std::filesystem::path const& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace strata::test
