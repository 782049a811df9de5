// What image and machine-image transfers share (registry/transfer.cpp): the
// store's records of layer blobs, encoding and pushing a layer, finding a layer
// by content digest, fetching and materializing one, and reading a strata
// manifest with its config, and streaming a pull's layer (stream_pull.cpp).
// Internal to registry/.
// Threading: one thread calls these. stream_layer runs worker threads of its
// own (each on its own RegistryClient::clone(), the first on the caller's
// client) and joins them before it returns; nothing here is shared with them
// after that.
#pragma once

#include "base/fd.h"
#include "imaging/archive/archive_format.h"
#include "imaging/layer/layer.h"
#include "registry/lazy.h"
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

// The locks a pull holds on its streamed layers' files under tmp/registry/
// (tmp/registry/<key>.lock, flock): from before it looks at a layer's files
// until the pull is over, so another pull of the same blobs neither removes,
// writes nor adopts them meanwhile. Each lock file is removed while still held
// (whoever takes one checks that its name still leads to the file it locked).
struct PullLocks {
    std::vector<std::pair<std::string, Fd>> held; // lock file path, its descriptor
    PullLocks() = default;
    PullLocks(PullLocks const&) = delete;
    PullLocks& operator=(PullLocks const&) = delete;
    ~PullLocks();
};

// Layers a pull reused or built; the built ones are under tmp/ until recorded.
// Members are destroyed in reverse order: the locks go last.
struct Fetched {
    PullLocks locks;
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

// One blob of a layer with its chunk index.
struct PartIndex {
    BlobPart const* blob;
    archive::LayerRecord rec;
};

// The chunk indexes of a layer's blobs, each fetched alone with a Range request
// and checked against the manifest's annotation. Unsupported when a blob has no
// index annotation or chunks a layer file cannot take in place (not whole 4 KiB
// blocks, or not in layer and blob order): such blobs are pulled whole.
[[nodiscard]] Result<std::vector<PartIndex>> fetch_indexes(RegistryClient& client, WantedLayer const& w, TransferStats& stats);
// Gives every chunk its place in a new layer file, in layer order (so the data
// of consecutive chunks is contiguous), records the zero ranges, and extends the
// file to hold the data (holes until written). Returns the chunks' placements.
[[nodiscard]] Result<std::vector<LazyChunk>> lay_out(Layer& layer, std::vector<PartIndex> const& parts);
// A pull's layer, streamed (stream_pull.cpp): the chunks it lacks go from
// several parallel Range requests through zstd and each chunk's SHA-256 into a
// layer file named by its blobs under tmp/registry/, while the layer's content
// digest is computed in order on the way; once frozen, the layer is linked at
// tmp/<id> (added to f.temps) and its file is removed when the image is
// recorded (f.blob_files). A pull that fails or is killed leaves that file, and
// a repeated one resumes it. Unsupported (nothing fetched but the indexes)
// for blobs it cannot stream. Returns the layer and its content digest.
[[nodiscard]] Result<std::pair<LayerId, Sha256>> stream_layer(Store& store, RegistryClient& client, WantedLayer const& w, Fetched& f,
    TransferStats& stats);
std::string hex_of(std::string const& digest);
// Removes what pulls left under tmp/registry/ (streamed layer files with their
// chunk marks, blobs downloaded whole) that no process holds and that nothing
// wrote for older_than_s seconds: a pull repeated within that time resumes
// from them, one never repeated does not keep their space for ever.
void remove_stale_pulls(std::string const& store_root, std::int64_t older_than_s);
inline constexpr std::int64_t kStalePullSeconds = 7 * 24 * 3600;

// Makes registry/'s folders in the store. Changes nothing else: a request that
// is refused afterwards leaves the store as it found it.
[[nodiscard]] Status ensure_dirs(Store& store);
// Prunes the records of removed layers (prune_records) and removes week-old
// leftovers of pulls (remove_stale_pulls). Called once a push or pull has been
// accepted (its reference, manifest and layers checked), never before: a
// refused request changes nothing.
void tidy_registry_files(Store& store);
// The names in a folder, without "." and ".." (none if it cannot be read).
std::vector<std::string> dir_names(std::string const& dir);
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
