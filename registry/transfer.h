// Pushing store images to an OCI registry and pulling them back (REGISTRY.md).
// An image becomes an OCI image manifest v1.1 whose artifactType says what it is,
// whose config blob holds the image's metadata (what an archive's manifest
// holds) and whose layers are the image's frozen layers, each one blob (or, if
// larger than the part size, one blob per part of its range) in the strata
// layer-blob format (a one-layer portable archive: independent zstd frames, a
// chunk index, a SHA-256 per chunk). Layers carry their content digest as an
// annotation, so a pull reuses layers the store already has; a lazy pull
// (registry/lazy.h) records them from their chunk indexes alone.
//
// Push never sends a blob the registry has (HEAD first, then a cross-repository
// mount from a repository this store pushed it to or pulled it from). Pull
// verifies the manifest (when pinned), the config, every blob and every chunk
// before anything is recorded; blobs are downloaded under the store's tmp/ and
// kept there until the image is recorded, so a repeated pull resumes from them.
//
// The store keeps, per layer it pushed or pulled, the blobs that carry it
// ($STRATA_HOME/registry/layers/<layer id>.json: each part's blob digest, size,
// range and chunk index place; the content digest; repositories known to hold
// them). Frozen layers never change, so the record stays true; records naming a
// layer gc removed are pruned by the next push or pull (prune_records).
//
// Threading: one thread; the archive writer runs its own compression workers.
#pragma once

#include "registry/client.h"
#include "store/machine_image.h"
#include "store/store.h"

namespace strata::registry {

inline constexpr char const* kImageArtifactType = "application/vnd.strata.image.v1";
inline constexpr char const* kImageConfigType = "application/vnd.strata.image.config.v1+json";
inline constexpr char const* kLayerBlobType = "application/vnd.strata.layer.v1.archive";
inline constexpr char const* kContentDigestAnnotation = "org.strata.layer.content-digest";
inline constexpr char const* kLayerSizeAnnotation = "org.strata.layer.size";
// Where a layer blob's chunk index (the archive manifest) lies and its SHA-256,
// so a lazy pull can fetch it alone with a Range request and verify it.
inline constexpr char const* kIndexDigestAnnotation = "org.strata.layer.index-digest";
inline constexpr char const* kIndexOffsetAnnotation = "org.strata.layer.index-offset";
inline constexpr char const* kIndexLengthAnnotation = "org.strata.layer.index-length";
// A layer larger than the push's part size travels as several blobs, each
// carrying [part-offset, part-offset + part-length) of it.
inline constexpr char const* kPartOffsetAnnotation = "org.strata.layer.part-offset";
inline constexpr char const* kPartLengthAnnotation = "org.strata.layer.part-length";
inline constexpr char const* kMachineImageArtifactType = "application/vnd.strata.machine-image.v1";
inline constexpr char const* kMachineImageConfigType = "application/vnd.strata.machine-image.config.v1+json";
inline constexpr char const* kBootArtifactType = "application/vnd.strata.boot-artifact.v1";
inline constexpr char const* kDiskAnnotation = "org.strata.disk.id";
inline constexpr char const* kOciManifestType = "application/vnd.oci.image.manifest.v1+json";

struct TransferOptions {
    ClientOptions client;
    int level { 1 };                      // zstd level of new layer blobs
    std::size_t chunk_size { 1 << 20 };   // uncompressed bytes per chunk (the unit a lazy read fetches)
    // Push: a layer larger than this is split into parts of this much of its
    // range, one blob each (a multiple of 1 MiB; 0: never split). Identical
    // parts are identical blobs, so they are sent once.
    std::uint64_t part_size { 4ULL << 30 };
    ProgressFn progress;
    // Pull: record the object at once, its new layers incomplete (registry/lazy.h):
    // their chunks are fetched when a VM reads them, and by a background fill.
    bool lazy { false };
};

struct PushResult {
    std::string digest; // the manifest's
    TransferStats stats;
    std::vector<std::string> notes; // what the push left out, for the user
};

struct PullResult {
    ObjectManifest image;
    std::string digest; // the manifest's
    TransferStats stats;
};

// Removes the store's layer blob records and lazy descriptions of layers that
// are no longer in the store (gc removed them); every push and pull does this.
void prune_records(std::string const& store_root);

[[nodiscard]] Result<PushResult> push_image(Store& store, std::string const& name, Reference const& ref, TransferOptions const& options);
// name empty: the repository's last component.
[[nodiscard]] Result<PullResult> pull_image(Store& store, Reference const& ref, std::string name, TransferOptions const& options);

struct MachinePullResult {
    MachineImageRecord image;
    std::string digest;
    TransferStats stats;
};

// Machine images (machine_image_transfer.cpp): the same, with the record in the
// config blob and the boot artifacts as blobs of their own.
[[nodiscard]] Result<PushResult> push_machine_image(Store& store, std::string const& name, Reference const& ref, TransferOptions const& options);
[[nodiscard]] Result<MachinePullResult> pull_machine_image(Store& store, Reference const& ref, std::string name, TransferOptions const& options);

} // namespace strata::registry
