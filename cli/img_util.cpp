#include "cli/img_util.h"

#include "base/fd.h"

#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata::cli {

Result<std::uint64_t> parse_size(std::string const& text)
{
    auto bad = [&] { return make_error(ErrorKind::Usage, "invalid size '" + text + "' (bytes, or a number with k, M, G, T, P, E)"); };
    if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.'))
        return bad();
    std::size_t used = 0;
    double value = 0;
    try {
        value = std::stod(text, &used);
    } catch (...) {
        return bad();
    }
    std::string suffix = text.substr(used);
    int shift = 0;
    if (suffix.empty() || suffix == "b" || suffix == "B")
        shift = 0;
    else if (suffix == "k" || suffix == "K")
        shift = 10;
    else if (suffix == "M")
        shift = 20;
    else if (suffix == "G")
        shift = 30;
    else if (suffix == "T")
        shift = 40;
    else if (suffix == "P")
        shift = 50;
    else if (suffix == "E")
        shift = 60;
    else
        return bad();
    double bytes = std::ldexp(value, shift);
    if (!(bytes >= 0) || bytes >= 18446744073709551615.0)
        return bad();
    return static_cast<std::uint64_t>(bytes);
}

std::string human_size(std::uint64_t bytes)
{
    static char const* const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        ++u;
    }
    char buf[64];
    if (u == 0)
        std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    else
        std::snprintf(buf, sizeof buf, "%.3g %s", v, units[u]);
    return buf;
}

Result<std::pair<std::uint64_t, std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>>>> file_data_extents(std::string const& path)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error("open '" + path + "'");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    auto size = static_cast<std::uint64_t>(st.st_size);
    std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>> out;
    std::uint64_t pos = 0;
    while (pos < size) {
        off_t data = ::lseek(fd.get(), static_cast<off_t>(pos), SEEK_DATA);
        std::uint64_t d = data < 0 ? size : static_cast<std::uint64_t>(data);
        if (d > pos)
            out.emplace_back(pos, d - pos, false);
        if (d >= size)
            break;
        off_t hole = ::lseek(fd.get(), static_cast<off_t>(d), SEEK_HOLE);
        std::uint64_t h = hole < 0 ? size : std::min<std::uint64_t>(static_cast<std::uint64_t>(hole), size);
        out.emplace_back(d, h - d, true);
        pos = h;
    }
    return std::make_pair(size, std::move(out));
}

} // namespace strata::cli
