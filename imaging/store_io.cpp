#include "imaging/store_io.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace strata {

bool is_zero(std::span<std::byte const> bytes)
{
    // Compare in 8-byte words, then the buffer against itself shifted by one word:
    // both are memory-bandwidth bound.
    std::size_t n = bytes.size();
    if (n < 16) {
        return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte { 0 }; });
    }
    std::uint64_t head = 0;
    std::memcpy(&head, bytes.data(), 8);
    if (head != 0)
        return false;
    return std::memcmp(bytes.data(), bytes.data() + 8, n - 8) == 0;
}

Result<RangeStatus> file_block_status(int fd, std::uint64_t file_size, std::uint64_t offset, std::uint64_t max_length)
{
    if (offset >= file_size)
        return RangeStatus { RangeKind::Zero, max_length };
    std::uint64_t limit = std::min(max_length, file_size - offset);
    off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) // no data after offset: the rest is a hole
            return RangeStatus { RangeKind::Zero, max_length };
        return RangeStatus { RangeKind::Data, limit }; // no SEEK_DATA support: assume data
    }
    if (static_cast<std::uint64_t>(data) > offset)
        return RangeStatus { RangeKind::Zero, std::min(max_length, static_cast<std::uint64_t>(data) - offset) };
    off_t hole = ::lseek(fd, static_cast<off_t>(offset), SEEK_HOLE);
    if (hole < 0)
        return RangeStatus { RangeKind::Data, limit };
    return RangeStatus { RangeKind::Data, std::min(limit, static_cast<std::uint64_t>(hole) - offset) };
}

} // namespace strata

#include <fcntl.h>
#include <sys/stat.h>

namespace strata {

static std::string parent_of(std::string const& path)
{
    auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

Status fsync_parent_dir(std::string const& path)
{
    int dfd = ::open(parent_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno_error("open directory of '" + path + "'");
    int rc = ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    if (rc != 0)
        return errno_error("fsync directory of '" + path + "'", err);
    return ok();
}

Result<AtomicFile> AtomicFile::create(std::string const& path, unsigned mode)
{
    AtomicFile f;
    f.m_path = path;
    auto slash = path.rfind('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    std::string tmpl = parent_of(path) + "/." + base + ".tmp-XXXXXX";
    f.m_fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (f.m_fd < 0)
        return errno_error("create a temporary file beside '" + path + "'");
    f.m_temp = tmpl;
    ::fchmod(f.m_fd, static_cast<mode_t>(mode));
    return f;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : m_fd(other.m_fd)
    , m_path(std::move(other.m_path))
    , m_temp(std::move(other.m_temp))
{
    other.m_fd = -1;
    other.m_temp.clear();
}

AtomicFile::~AtomicFile()
{
    if (m_fd >= 0)
        ::close(m_fd);
    if (!m_temp.empty())
        ::unlink(m_temp.c_str());
}

Status AtomicFile::commit(bool no_replace)
{
    if (::fsync(m_fd) != 0)
        return errno_error("fsync '" + m_temp + "'");
    if (no_replace) {
        // link() fails with EEXIST instead of replacing; then drop the temporary name.
        if (::link(m_temp.c_str(), m_path.c_str()) != 0)
            return errno_error("create '" + m_path + "'");
        ::unlink(m_temp.c_str());
    } else if (::rename(m_temp.c_str(), m_path.c_str()) != 0) {
        return errno_error("rename '" + m_temp + "' to '" + m_path + "'");
    }
    m_temp.clear();
    ::close(m_fd);
    m_fd = -1;
    return fsync_parent_dir(m_path);
}

} // namespace strata
