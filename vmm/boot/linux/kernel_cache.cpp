#include "vmm/boot/linux/kernel_cache.h"

#include "base/fd.h"
#include "base/file.h"
#include "base/sha256.h"
#include "imaging/store_io.h"
#include "vmm/boot/linux/decompress.h"

#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata::linux_boot {

std::optional<std::filesystem::path> default_kernel_cache_dir()
{
    if (char const* home = std::getenv("STRATA_HOME"); home && *home)
        return std::filesystem::path(home) / "cache" / "kernels";
    if (char const* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
        return std::filesystem::path(xdg) / "strata" / "kernels";
    if (char const* home = std::getenv("HOME"); home && *home)
        return std::filesystem::path(home) / ".cache" / "strata" / "kernels";
    return std::nullopt;
}

std::string sha256_hex(std::span<std::byte const> data)
{
    return strata::sha256_hex(strata::sha256_bytes(data));
}

Status store_in_cache(std::filesystem::path const& path, std::span<std::byte const> data)
{
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
        return make_error(ErrorKind::Io, "create " + path.parent_path().string() + ": " + ec.message());
    STRATA_TRY(file, AtomicFile::create(path.string()));
    STRATA_TRY(pwrite_all(file.fd(), data, 0));
    return file.commit();
}

Result<CachedKernel> decompress_cached(std::span<std::byte const> image, std::span<std::byte const> payload,
    std::optional<std::filesystem::path> const& cache_dir, std::uint64_t max_output)
{
    CachedKernel out;
    std::optional<std::filesystem::path> entry;
    if (cache_dir)
        entry = *cache_dir / (sha256_hex(image) + ".vmlinux");
    if (entry) {
        int fd = ::open(entry->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            Fd file(fd);
            struct stat st {};
            std::array<std::byte, 4> magic {};
            // A cached entry must still look like what decompression yields (an ELF);
            // anything else is ignored and rewritten.
            if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) <= max_output
                && pread_all(fd, magic, 0) && detect_compression(magic) == Compression::Uncompressed) {
                out.file = std::move(file);
                out.file_size = static_cast<std::uint64_t>(st.st_size);
                out.hit = true;
                return out;
            }
            out.cache_note = "ignored an unreadable cache entry " + entry->string();
        }
    }
    STRATA_TRY(data, (decompress(payload, max_output)));
    out.vmlinux = std::move(data);
    out.entry = entry;
    return out;
}

} // namespace strata::linux_boot
