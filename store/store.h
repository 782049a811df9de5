// The store/ folder: what strata keeps under $STRATA_HOME. Disks, snapshots and
// images are manifests (manifest.h) over imaging's layer files; VM records,
// instance templates and machine images (vm_record.h, template_record.h,
// machine_image.h, with record_files.h for their folders and lock) name those
// manifests and boot artifacts stored once by digest (artifacts.h). Rootfs
// building, layer transfer and machine-image archives sit here too, because they
// make store objects. store/ knows what a VM is made of but never runs one: it
// depends on imaging/ and base/ only, and vmm/ and cli/ depend on it.
//
// Store: the image store directory ($STRATA_HOME, default ~/.local/share/strata)
// and every operation on its disks, snapshots and images. The CLI (`strata
// disks|snapshots|images`) is a thin layer over this class, and the VMM uses it
// to open a disk's chain and to record snapshots it froze itself.
//
// Layout:
//   layers/<layer id>            strata layer files, named by ID only
//   disks/<name>.json            ObjectManifest (manifest.h): layers by ID
//   snapshots/<name>.json
//   images/<name>.json
//   tmp/                         imports in progress (never referenced)
//   store.lock                   the store-wide OFD lock
//
// Rules. Every change to manifests or layers/ happens under an exclusive OFD lock
// on store.lock (readers take it shared), so two processes never race on a
// manifest; manifests are replaced atomically (temp + fsync + rename + directory
// fsync). A disk's top layer is writable and locked by whoever has the disk open
// (Layer's OFD lock): operations on a disk that a VM is running on fail with Busy.
// Garbage collection (after every delete, revert, commit and flatten) removes
// layer files that no disk, snapshot or image names — never one that any uses.
// Snapshots and clones are O(1): they freeze a top layer and create an empty one.
//
// Threading: a Store object is used by one thread at a time; several processes
// may use one store directory at once (the lock serializes them).
#pragma once

#include "base/result.h"
#include "imaging/chain.h"
#include "store/manifest.h"
#include "imaging/open_image.h"
#include "imaging/store_io.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace strata {

enum class ExportFormat { Archive, Raw, Qcow2, Strata };

struct ImportOptions {
    std::optional<ImageFormat> format; // detected from the file's magic when empty
    std::string description;
    // The manifest's `source`: how the image was made ("directory" for create-rootfs).
    // Never a host path: manifests travel between machines.
    std::string source { "import" };
    ProgressFn progress;
};

struct ExportOptions {
    ExportFormat format { ExportFormat::Archive };
    int level { 1 };                 // archive zstd level
    std::size_t chunk_size { 4 << 20 };
    ProgressFn progress;
};

struct GcReport {
    std::vector<std::string> removed; // layer IDs
};

// Details of a disk/snapshot/image for describe: the manifest plus layer facts.
struct ObjectDetails {
    ObjectManifest manifest;
    struct LayerFacts {
        LayerId id;
        std::uint64_t file_bytes { 0 };  // allocated on the host
        bool frozen { false };
    };
    std::vector<LayerFacts> layers;
    std::vector<std::string> used_by; // "snapshot:x", "image:y", "disk:z" sharing its layers
};

// Copy helpers shared by import, export and `img convert`.
// What any image open_image gives holds (qcow2 and strata know; raw files use
// SEEK_DATA/SEEK_HOLE on path).
[[nodiscard]] Result<BlockStatusFn> image_block_status(BlockBackend& backend, ImageFormat format, std::string const& path);
[[nodiscard]] BlockStatusFn chain_block_status(Chain& chain);
// Writes source into a new strata layer file at path (which must not exist),
// storing only non-zero 4 KiB blocks; frozen (with its digest) if freeze.
[[nodiscard]] Status copy_to_new_layer(CopySource const& source, std::string const& path, LayerId id, bool freeze,
    ProgressFn const& progress = {});
// Writes source into a sparse raw file at path (atomically replaced).
[[nodiscard]] Status copy_to_raw(CopySource const& source, std::string const& path, ProgressFn const& progress = {});

// Holds the store-wide OFD lock (shared or exclusive) until destroyed.
class StoreLock {
public:
    explicit StoreLock(int fd)
        : m_fd(fd)
    {
    }
    StoreLock(StoreLock&& other) noexcept
        : m_fd(other.m_fd)
    {
        other.m_fd = -1;
    }
    StoreLock(StoreLock const&) = delete;
    StoreLock& operator=(StoreLock const&) = delete;
    StoreLock& operator=(StoreLock&&) = delete;
    ~StoreLock();

private:
    int m_fd;
};

class Store {
public:
    // $STRATA_HOME, or ~/.local/share/strata.
    [[nodiscard]] static std::string default_root();
    // Opens (creating the directories if needed) the store at root.
    [[nodiscard]] static Result<std::unique_ptr<Store>> open(std::string const& root);
    ~Store();

    std::string const& root() const { return m_root; }
    std::string layer_path(LayerId const& id) const;

    // --- Disks ---
    [[nodiscard]] Result<ObjectManifest> create_disk(std::string const& name, std::uint64_t size);
    // An O(1) clone: a manifest naming the image's or snapshot's frozen layers; the
    // writable top is made when the disk is first opened for writing.
    [[nodiscard]] Result<ObjectManifest> create_disk_from(std::string const& name, ObjectKind source_kind, std::string const& source);
    [[nodiscard]] Result<ObjectManifest> snapshot_disk(std::string const& disk, std::string const& snapshot);
    [[nodiscard]] Status revert_disk(std::string const& disk, std::string const& snapshot);
    [[nodiscard]] Status commit_disk(std::string const& disk);
    [[nodiscard]] Status flatten_disk(std::string const& disk);
    [[nodiscard]] Status resize_disk(std::string const& disk, std::uint64_t new_size);
    // Opens a disk's chain (top writable unless options.read_only) for a VMM or a tool.
    // A disk of a suspended VM is refused (Busy), except to that VM itself:
    // as_vm names the VM whose VMM opens it.
    [[nodiscard]] Result<std::unique_ptr<Chain>> open_disk(std::string const& disk, ChainOptions const& options = {},
        std::string const& as_vm = {});
    // The layer files of a disk, bottom first (for callers that open them themselves).
    [[nodiscard]] Result<std::vector<std::string>> layer_paths(ObjectKind kind, std::string const& name);
    // Whether a process (or the kernel, for one that has ended) holds a write
    // lock on the disk's top layer or the one under it, where a VMM's writable
    // layers are (layer.h, Locks). Reads the manifest without the store lock:
    // manifests are replaced whole (AtomicFile), so this sees one version.
    [[nodiscard]] Result<bool> disk_held_for_writing(std::string const& disk) const;

    // Freezes a disk no VMM runs, in place, and returns its layers (all frozen);
    // its next writable open stacks a new top. For machine images of stopped VMs.
    [[nodiscard]] Result<std::vector<LayerId>> freeze_disk(std::string const& disk);

    // A live capture's two halves, so the durable work happens while the VM runs.
    // prepare_push creates an empty layer and records it as the disk's new top,
    // above the top the VMM is still writing; the VMM then freezes that top and
    // adopts the new one (Chain::freeze_top_and_adopt). Until it does, the disk's
    // manifest names a writable layer under the top; open_disk freezes it if the
    // VMM died in between (nothing can have been written to the new top yet).
    // cancel_push undoes a prepare_push whose freeze did not happen.
    [[nodiscard]] Result<LayerId> prepare_push(std::string const& disk);
    [[nodiscard]] Status cancel_push(std::string const& disk, LayerId const& new_top);
    // Records a snapshot of a disk made of these (frozen) layers.
    [[nodiscard]] Status record_snapshot(std::string const& snapshot, std::string const& disk, std::vector<LayerId> const& layers);

    // --- Images ---
    [[nodiscard]] Result<ObjectManifest> create_image(std::string const& name, ObjectKind source_kind, std::string const& source);
    [[nodiscard]] Result<ObjectManifest> import_image(std::string const& name, std::string const& file, ImportOptions const& options = {});
    [[nodiscard]] Status export_image(std::string const& name, std::string const& file, ExportOptions const& options = {});

    // --- Images that arrive from elsewhere (registry pulls, registry/) ---
    // tmp/: where such layers are built before adopt_image moves them in.
    std::string tmp_dir() const { return m_root + "/tmp"; }
    // The recorded content digest of every frozen layer that has one (no data
    // read: the headers, and the maps of layers whose digest an older strata
    // recorded, which Layer::digest checks), for finding a layer the store
    // already holds.
    [[nodiscard]] Result<std::vector<std::pair<LayerId, Sha256>>> layer_digests();
    // Records image m (its name must be new). Its layers are either in layers/
    // already or, when listed in from_tmp, complete frozen layer files at
    // tmp/<id>, moved into layers/ here. All under the exclusive lock, so a gc
    // cannot take a reused layer away between the check and the record; on any
    // failure nothing is recorded (moved layers are collected again).
    [[nodiscard]] Result<ObjectManifest> adopt_image(ObjectManifest m, std::vector<LayerId> const& from_tmp);

    // --- Layers pulled lazily (registry/lazy.h) ---
    // Where a layer's remote description lives while its data is incomplete;
    // only a VMM's LazyDisk may read such a layer.
    static std::string lazy_description_path(std::string const& root, LayerId const& id);
    // Busy if any of the layers is incomplete: for operations that read layer
    // data directly (export, flatten, commit).
    [[nodiscard]] Status require_complete(std::vector<LayerId> const& layers, std::string const& what) const;

    // --- Every kind ---
    [[nodiscard]] Result<std::vector<ObjectManifest>> list(ObjectKind kind);
    [[nodiscard]] Result<ObjectManifest> get(ObjectKind kind, std::string const& name);
    [[nodiscard]] Result<ObjectDetails> describe(ObjectKind kind, std::string const& name);
    // Removes the object and collects the layers nothing else uses.
    [[nodiscard]] Status remove(ObjectKind kind, std::string const& name);
    [[nodiscard]] Result<GcReport> gc();

private:
    using Lock = StoreLock;
    Store() = default;
    std::string manifest_path(ObjectKind kind, std::string const& name) const;
    [[nodiscard]] Result<Lock> lock(bool exclusive);
    [[nodiscard]] Result<ObjectManifest> load(ObjectKind kind, std::string const& name) const;
    [[nodiscard]] Status save(ObjectManifest const& m, bool must_be_new);
    [[nodiscard]] Result<std::vector<ObjectManifest>> load_all(ObjectKind kind) const;
    [[nodiscard]] Result<GcReport> gc_locked();
    [[nodiscard]] Status finish_prepared_push(ObjectManifest const& disk, IoEngine& engine);
    // The disk's manifest, with a writable top made first if its last layer is
    // frozen (a clone not yet written, a disk just snapshotted, or a capture
    // whose VMM died).
    // The caller holds the lock exclusively.
    [[nodiscard]] Result<ObjectManifest> writable_disk(std::string const& disk);
    [[nodiscard]] Result<std::vector<LayerId>> freeze_top(ObjectManifest const& disk);
    [[nodiscard]] Result<ObjectManifest> clone_layers(std::string const& name, ObjectManifest const& from, std::string source);
    [[nodiscard]] Result<std::vector<LayerId>> import_into_layers(std::string const& file, ImportOptions const& options);

    std::string m_root;
    int m_lock_fd { -1 };
};

} // namespace strata
