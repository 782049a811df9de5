// Image files by format: detect_format() reads a file's magic, and open_image()
// opens a raw file, a strata layer (as a chain: optional lower layers + the file
// on top) or a qcow2 image as a BlockBackend. The img tools (info, check, map,
// bench, convert, compare) and import go through here, so a new format is added
// in one place.
//
// Magic: "STRATALY" strata layer, "QFI\xfb" qcow2, "STRATARC" strata archive;
// anything else is raw. Archives are not block devices: open_image refuses them
// (they are read by `images import`).
//
// Threading: plain functions; the returned backend follows BlockBackend's rules.
#pragma once

#include "imaging/block_backend.h"
#include "imaging/io/io_engine.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

enum class ImageFormat { Raw, Strata, Qcow2, Archive };

[[nodiscard]] std::string_view format_name(ImageFormat format);
// "raw", "strata", "qcow2", "archive"; anything else is a Usage error.
[[nodiscard]] Result<ImageFormat> parse_format(std::string_view name);
[[nodiscard]] Result<ImageFormat> detect_format(std::string const& path);

struct OpenImageOptions {
    bool writable { false };
    CacheMode cache { CacheMode::None };
    EngineKind engine { EngineKind::Uring };
    unsigned queue_depth { 128 };
    // Strata only: frozen layers below the file, bottom first (a layer stores no
    // paths of other files, so the caller names its chain).
    std::vector<std::string> lower_layers {};
};

[[nodiscard]] Result<std::unique_ptr<BlockBackend>> open_image(std::string const& path, ImageFormat format,
    OpenImageOptions const& options = {});

} // namespace strata
