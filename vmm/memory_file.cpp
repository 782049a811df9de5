#include "vmm/memory_file.h"

#include "base/fd.h"
#include "imaging/layer/crc32c.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace strata {

namespace {

constexpr std::size_t page = 4096;

bool all_zero(std::span<std::byte const> bytes)
{
    // Word at a time: this runs over every page of guest RAM during a capture.
    std::size_t i = 0;
    for (; i + sizeof(std::uint64_t) <= bytes.size(); i += sizeof(std::uint64_t)) {
        std::uint64_t w;
        std::memcpy(&w, bytes.data() + i, sizeof w);
        if (w != 0)
            return false;
    }
    for (; i < bytes.size(); ++i)
        if (bytes[i] != std::byte { 0 })
            return false;
    return true;
}

std::uint32_t add_page(std::uint32_t crc, std::uint64_t index, std::span<std::byte const> data)
{
    crc = crc32c(std::as_bytes(std::span(&index, 1)), crc);
    return crc32c(data, crc);
}

Status write_all(int fd, std::span<std::byte const> data, std::uint64_t offset, std::filesystem::path const& path)
{
    while (!data.empty()) {
        ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("write memory file '" + path.string() + "'");
        }
        data = data.subspan(static_cast<std::size_t>(n));
        offset += static_cast<std::uint64_t>(n);
    }
    return ok();
}

} // namespace

Result<std::uint32_t> write_memory_file(std::filesystem::path const& path, std::span<std::byte const> ram)
{
    if (ram.size() % page != 0)
        return make_error(ErrorKind::Internal, "guest RAM is not a whole number of pages");
    int raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (raw < 0)
        return errno_error("create memory file '" + path.string() + "'");
    Fd fd(raw);
    if (::ftruncate(fd.get(), static_cast<off_t>(ram.size())) != 0)
        return errno_error("size memory file '" + path.string() + "'");
    std::uint32_t crc = 0;
    // Runs of non-zero pages go out in one write each.
    std::size_t run_start = 0, run_len = 0;
    for (std::size_t at = 0; at < ram.size(); at += page) {
        auto p = ram.subspan(at, page);
        if (all_zero(p)) {
            if (run_len > 0)
                STRATA_TRY(write_all(fd.get(), ram.subspan(run_start, run_len), run_start, path));
            run_len = 0;
            continue;
        }
        crc = add_page(crc, at / page, p);
        if (run_len == 0)
            run_start = at;
        run_len += page;
    }
    if (run_len > 0)
        STRATA_TRY(write_all(fd.get(), ram.subspan(run_start, run_len), run_start, path));
    if (::fsync(fd.get()) != 0)
        return errno_error("sync memory file '" + path.string() + "'");
    return crc;
}

Result<std::uint32_t> memory_file_crc(int fd, std::uint64_t size)
{
    std::uint32_t crc = 0;
    std::vector<std::byte> buf(1 << 20);
    off_t at = 0;
    auto const end = static_cast<off_t>(size);
    while (at < end) {
        off_t data = ::lseek(fd, at, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break; // only a hole is left
            return errno_error("read memory file");
        }
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return errno_error("read memory file");
        hole = std::min(hole, end);
        // Extents start and end on file-system blocks, which are whole pages here;
        // round outwards anyway, so a page is never half-read.
        off_t pos = data - data % static_cast<off_t>(page);
        off_t const stop = std::min(end, (hole + static_cast<off_t>(page) - 1) / static_cast<off_t>(page) * static_cast<off_t>(page));
        while (pos < stop) {
            auto const want = static_cast<std::size_t>(std::min<off_t>(static_cast<off_t>(buf.size()), stop - pos));
            ssize_t n = ::pread(fd, buf.data(), want, pos);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return errno_error("read memory file");
            }
            if (n == 0 || static_cast<std::size_t>(n) % page != 0)
                return make_error(ErrorKind::BadInput, "memory file is shorter than the guest's RAM");
            for (std::size_t off = 0; off < static_cast<std::size_t>(n); off += page) {
                auto p = std::span<std::byte const>(buf.data() + off, page);
                if (!all_zero(p))
                    crc = add_page(crc, (static_cast<std::uint64_t>(pos) + off) / page, p);
            }
            pos += n;
        }
        at = stop;
    }
    return crc;
}

} // namespace strata
