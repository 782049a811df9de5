#include "imaging/open_image.h"

#include "imaging/chain.h"
#include "imaging/qcow2/qcow2_reader.h"
#include "imaging/raw_backend.h"

#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace strata {

std::string_view format_name(ImageFormat format)
{
    switch (format) {
    case ImageFormat::Raw: return "raw";
    case ImageFormat::Strata: return "strata";
    case ImageFormat::Qcow2: return "qcow2";
    case ImageFormat::Archive: return "archive";
    }
    return "raw";
}

Result<ImageFormat> parse_format(std::string_view name)
{
    for (ImageFormat f : { ImageFormat::Raw, ImageFormat::Strata, ImageFormat::Qcow2, ImageFormat::Archive })
        if (name == format_name(f))
            return f;
    return make_error(ErrorKind::Usage, "unknown image format '" + std::string(name) + "' (raw, strata, qcow2, archive)");
}

Result<ImageFormat> detect_format(std::string const& path)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errno_error("open '" + path + "'");
    char magic[8] {};
    ssize_t n = ::pread(fd.get(), magic, sizeof magic, 0);
    if (n < 0)
        return errno_error("read '" + path + "'");
    if (n == 8 && std::memcmp(magic, "STRATALY", 8) == 0)
        return ImageFormat::Strata;
    if (n == 8 && std::memcmp(magic, "STRATARC", 8) == 0)
        return ImageFormat::Archive;
    if (n >= 4 && std::memcmp(magic, "QFI\xfb", 4) == 0)
        return ImageFormat::Qcow2;
    return ImageFormat::Raw;
}

Result<std::unique_ptr<BlockBackend>> open_image(std::string const& path, ImageFormat format, OpenImageOptions const& options)
{
    if (format != ImageFormat::Strata && !options.lower_layers.empty())
        return make_error(ErrorKind::Usage, "lower layers apply to strata images only");
    switch (format) {
    case ImageFormat::Raw: {
        STRATA_TRY(raw, RawBackend::open(path, RawOptions { options.writable, options.cache, options.engine, options.queue_depth }));
        return std::unique_ptr<BlockBackend>(std::move(raw));
    }
    case ImageFormat::Strata: {
        std::vector<std::string> paths = options.lower_layers;
        paths.push_back(path);
        STRATA_TRY(chain, Chain::open(paths, ChainOptions { options.cache, options.engine, options.queue_depth, !options.writable }));
        return std::unique_ptr<BlockBackend>(std::move(chain));
    }
    case ImageFormat::Qcow2: {
        if (options.writable)
            return make_error(ErrorKind::Unsupported, "qcow2 images are read-only in strata (import or convert them)");
        STRATA_TRY(q, Qcow2Reader::open(path));
        return std::unique_ptr<BlockBackend>(std::move(q));
    }
    case ImageFormat::Archive:
        return make_error(ErrorKind::Unsupported, "'" + path + "' is a strata archive, not a disk image: use `strata images import`");
    }
    return make_error(ErrorKind::Internal, "unknown format");
}

} // namespace strata
