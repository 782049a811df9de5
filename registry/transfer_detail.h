// What image and machine-image transfers share (registry/transfer.cpp): the
// store's records of layer blobs, encoding and pushing a layer, finding a layer
// by content digest, fetching and materializing one, and reading a strata
// manifest with its config. Internal to registry/.
// Threading: one thread.
#pragma once

#include "registry/transfer.h"
#include "store/layer_transfer.h"

#include <nlohmann/json.hpp>

namespace strata::registry::detail {

// One blob carrying the range [offset, offset + length) of a layer (the whole
// layer unless it was split into parts, REGISTRY.md "Parts").
struct BlobPart {
    std::string blob;    // sha256:...
    std::uint64_t size { 0 };
    std::uint64_t offset { 0 }, length { 0 };
    // The blob's chunk index (its archive manifest): digest, offset and length.
    std::string index_digest;
    std::uint64_t index_offset { 0 }, index_length { 0 };
};

// What the store knows about the blobs carrying one of its layers.
struct LayerBlob {
    std::vector<BlobPart> parts;
    std::string content; // the layer's content digest
    std::uint64_t layer_size { 0 };
    std::vector<std::string> repositories; // "host/repo" known to hold the blobs
    // content is the digest of the layer as this store holds it (computed by
    // a push, or by a pull from the data), not a manifest's claim (a lazy
    // pull's, or a record an older strata wrote): only then is the layer found
    // by it (its blobs always find it).
    bool content_verified { false };
};

// A layer a manifest names, with its parts in order.
struct WantedLayer {
    std::vector<BlobPart> parts;
    std::string content;
    std::uint64_t layer_size { 0 };
    std::string disk; // a machine image's disk id, or empty
};

// The lazy descriptions a pull wrote, removed unless the object was recorded.
struct LazyFiles {
    std::string root;
    std::vector<LayerId> ids;
    LazyFiles() = default;
    LazyFiles(LazyFiles const&) = delete;
    LazyFiles& operator=(LazyFiles const&) = delete;
    ~LazyFiles();
};

struct StrataManifest {
    nlohmann::json manifest;
    nlohmann::json config;
    std::string digest;
};

// Layers a pull reused or built; the built ones are under tmp/ until recorded.
struct Fetched {
    std::vector<LayerId> ids, fresh;
    std::vector<std::string> blob_files;
    std::vector<std::pair<LayerId, LayerBlob>> records;
    TempLayerFiles temps;
    LazyFiles lazy;
};

struct TempFile {
    std::string path;
    TempFile() = default;
    explicit TempFile(std::string p)
        : path(std::move(p))
    {
    }
    TempFile(TempFile const&) = delete;
    TempFile& operator=(TempFile const&) = delete;
    ~TempFile();
};

// Makes registry/'s folders in the store and prunes what names removed layers.
[[nodiscard]] Status ensure_dirs(Store& store);
std::string repo_key(Reference const& ref);
Error bad(std::string const& what);
[[nodiscard]] Status push_layer(Store& store, RegistryClient& client, LayerId const& id, TransferOptions const& options, LayerBlob& out,
    TransferStats& stats);
[[nodiscard]] Status push_bytes(RegistryClient& client, std::string const& bytes, TransferStats& stats);
[[nodiscard]] Result<WantedLayer> parse_layer_descriptor(nlohmann::json const& l, std::uint64_t max_size, std::string const& where);
[[nodiscard]] Result<StrataManifest> get_strata_manifest(RegistryClient& client, std::string const& artifact_type, std::string const& config_type);
// The layer's descriptors in a manifest, one per part (disk_id: the machine
// image's disk, or empty).
std::vector<nlohmann::json> layer_descriptors(LayerBlob const& b, std::string const& disk_id);
// Consecutive descriptors of one layer's parts, put together and checked.
[[nodiscard]] Result<std::vector<WantedLayer>> group_parts(std::vector<WantedLayer> descriptors, std::string const& where);
// With lazy, a layer the store lacks becomes an incomplete layer (registry/lazy.h)
// rather than being downloaded.
[[nodiscard]] Status fetch_layer(Store& store, RegistryClient& client, WantedLayer const& w, bool bottom, Fetched& f, TransferStats& stats,
    TransferOptions const& options);
// Records which blob each fetched layer came from (before the object is recorded:
// a record naming a layer that never entered the store is ignored).
[[nodiscard]] Status save_records(Store& store, Fetched const& f);
// After the object is recorded: the layers stay, the downloaded blobs go.
void recorded(Fetched& f);

} // namespace strata::registry::detail
