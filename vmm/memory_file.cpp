#include "vmm/memory_file.h"

#include "base/fd.h"
#include "imaging/layer/crc32c.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
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

namespace {

// A new (never an existing) memory file, sized to the guest's RAM: sparse until written.
Result<Fd> create_memory_file(std::filesystem::path const& path, std::size_t size)
{
    if (size % page != 0)
        return make_error(ErrorKind::Internal, "guest RAM is not a whole number of pages");
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid())
        return errno_error("create memory file '" + path.string() + "'");
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
        return errno_error("size memory file '" + path.string() + "'");
    return fd;
}

} // namespace

Result<std::uint32_t> write_memory_file(std::filesystem::path const& path, std::span<std::byte const> ram)
{
    STRATA_TRY(fd, create_memory_file(path, ram.size()));
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

std::vector<PageRun> page_runs(std::span<std::uint64_t const> bitmap, std::uint64_t pages)
{
    std::vector<PageRun> runs;
    for (std::uint64_t p = 0; p < pages; ++p) {
        if (p % 64 == 0 && bitmap[p / 64] == 0) {
            p += 63; // a clean word: skip its 64 pages
            continue;
        }
        if ((bitmap[p / 64] >> (p % 64) & 1) == 0)
            continue;
        if (!runs.empty() && runs.back().first + runs.back().count == p)
            ++runs.back().count;
        else
            runs.push_back({ p, 1 });
    }
    return runs;
}

std::uint64_t page_count(std::span<PageRun const> runs)
{
    std::uint64_t n = 0;
    for (auto const& r : runs)
        n += r.count;
    return n;
}

namespace {

// The run's byte range, checked against a file or RAM of `size` bytes.
Result<std::pair<std::uint64_t, std::uint64_t>> run_bytes(PageRun const& run, std::uint64_t size)
{
    std::uint64_t const pages = size / page;
    if (run.count == 0 || run.first >= pages || run.count > pages - run.first)
        return make_error(ErrorKind::BadInput, "memory pages " + std::to_string(run.first) + "+" + std::to_string(run.count)
                + " lie outside the guest's RAM of " + std::to_string(pages) + " pages");
    return std::pair { run.first * page, run.count * page };
}

Status read_exact(int fd, std::byte* out, std::uint64_t len, std::uint64_t offset)
{
    while (len > 0) {
        ssize_t n = ::pread(fd, out, len, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("read memory file");
        }
        if (n == 0)
            return make_error(ErrorKind::BadInput, "memory file is shorter than its pages");
        out += n;
        len -= static_cast<std::uint64_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return ok();
}

} // namespace

Result<std::uint32_t> write_memory_diff(std::filesystem::path const& path, std::span<std::byte const> ram,
    std::span<PageRun const> runs)
{
    STRATA_TRY(fd, create_memory_file(path, ram.size()));
    std::uint32_t crc = 0;
    for (auto const& run : runs) {
        STRATA_TRY(range, run_bytes(run, ram.size()));
        auto bytes = ram.subspan(range.first, range.second);
        STRATA_TRY(write_all(fd.get(), bytes, range.first, path));
        for (std::uint64_t i = 0; i < run.count; ++i)
            crc = add_page(crc, run.first + i, bytes.subspan(i * page, page));
    }
    if (::fsync(fd.get()) != 0)
        return errno_error("sync memory file '" + path.string() + "'");
    return crc;
}

Result<std::uint32_t> memory_diff_crc(int fd, std::uint64_t size, std::span<PageRun const> runs)
{
    std::vector<std::byte> buf(1 << 20);
    std::uint32_t crc = 0;
    for (auto const& run : runs) {
        STRATA_TRY(range, run_bytes(run, size));
        for (std::uint64_t done = 0; done < range.second;) {
            std::uint64_t const n = std::min<std::uint64_t>(buf.size(), range.second - done);
            STRATA_TRY(read_exact(fd, buf.data(), n, range.first + done));
            for (std::uint64_t off = 0; off < n; off += page)
                crc = add_page(crc, (range.first + done + off) / page, std::span<std::byte const>(buf.data() + off, page));
            done += n;
        }
    }
    return crc;
}

Result<std::vector<Fd>> open_memory_layers(std::span<MemoryLayer const> memory, std::uint64_t memory_bytes)
{
    if (memory.empty())
        return make_error(ErrorKind::BadInput, "a snapshot needs at least one memory file");
    std::vector<Fd> files;
    for (std::size_t i = 0; i < memory.size(); ++i) {
        auto const& layer = memory[i];
        auto const& memory_file = layer.path;
        if (layer.diff != (i > 0))
            return make_error(ErrorKind::BadInput, i == 0 ? "the bottom memory file of a snapshot must be a whole one, not a Diff"
                                                          : "only the bottom memory file of a snapshot can be a whole one");
        Fd fd(::open(memory_file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid())
            return errno_error("open memory file '" + memory_file.string() + "'");
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0)
            return errno_error("stat memory file '" + memory_file.string() + "'");
        if (static_cast<std::uint64_t>(st.st_size) != memory_bytes)
            return make_error(ErrorKind::BadInput, "memory file '" + memory_file.string() + "' has " + std::to_string(st.st_size) + " bytes; the snapshot's RAM is " + std::to_string(memory_bytes));
        auto crc = layer.diff ? memory_diff_crc(fd.get(), memory_bytes, layer.runs) : memory_file_crc(fd.get(), memory_bytes);
        if (!crc)
            return crc.error().context("memory file '" + memory_file.string() + "'");
        if (crc.value() != layer.crc)
            return make_error(ErrorKind::BadInput, "memory file '" + memory_file.string() + "' does not match the snapshot (checksum differs): corrupt, or from another snapshot");
        files.push_back(std::move(fd));
    }
    return files;
}

Status read_memory_diff(int fd, std::span<PageRun const> runs, std::span<std::byte> ram)
{
    for (auto const& run : runs) {
        STRATA_TRY(range, run_bytes(run, ram.size()));
        STRATA_TRY(read_exact(fd, ram.data() + range.first, range.second, range.first));
    }
    return ok();
}

} // namespace strata
