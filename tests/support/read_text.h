// Test support: a whole file's text, the one read the helpers that follow guest
// logs (seqwriter_progress.h, memwriter_progress.h, strata_home.h) share.
//
// Threading: a plain function, any thread.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace strata::test {

// The file's text; an empty string when it does not exist or cannot be read.
// One bulk copy of the stream buffer, not a character at a time: the tests poll
// guests' serial logs of several MiB many times a second, at -O0, inside the
// emulated machine, where istreambuf_iterator's per-character loop made
// memwriter's Diff snapshot case take 92-113 s against 15 s.
inline std::string read_text(std::filesystem::path const& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    if (in)
        text << in.rdbuf();
    return text.str();
}

} // namespace strata::test
