// Moving a layer's own content in and out of the store.
// archive_layer_input: a layer as the archive writer reads it (its extents and
// their bytes), for image and machine-image exports.
// BlockAssembler: rebuilds a layer from data that arrives in increasing offsets
// (the copy loop of an image import, the chunks of an archive), writing whole
// 4 KiB blocks and padding partial ones with zeros. All-zero blocks are skipped
// in a bottom layer; in a layer over others (zeros_hide_below) they become zero
// entries, because skipping them would let the layer below show through where
// the disk reads zeros.
// TempLayerFiles: the layer files an import is writing, removed unless the
// import succeeds and releases them.
// Threading: all of it belongs to the one thread doing the export or import.
#pragma once

#include "base/result.h"
#include "imaging/archive/archive_writer.h"
#include "imaging/layer/layer.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strata {

// The layer must outlive the returned input.
LayerInput archive_layer_input(Layer const& layer);

class BlockAssembler {
public:
    BlockAssembler(Layer& layer, bool zeros_hide_below);

    // Data at offset; offsets never go back.
    [[nodiscard]] Status put(std::uint64_t offset, std::span<std::byte const> data);
    // A range known to read as zeros: its whole blocks become zero entries when
    // zeros hide the layers below, and are left unmapped otherwise.
    [[nodiscard]] Status zero(std::uint64_t offset, std::uint64_t length);
    // Writes the partial block still held, if any.
    [[nodiscard]] Status flush();

private:
    static constexpr std::uint64_t kNone = ~0ULL;
    [[nodiscard]] Status write_nonzero(std::uint64_t first, std::span<std::byte const> data);

    Layer& m_layer;
    std::vector<std::byte> m_block;
    bool m_zeros_hide_below;
    std::uint64_t m_index { kNone };
};

struct TempLayerFiles {
    std::vector<std::string> paths;
    TempLayerFiles() = default;
    TempLayerFiles(TempLayerFiles const&) = delete;
    TempLayerFiles& operator=(TempLayerFiles const&) = delete;
    ~TempLayerFiles();
};

} // namespace strata
