// Store: disk operations (create, clone, snapshot, revert, commit, flatten,
// resize, open) and the record of a snapshot frozen inside a running VMM.
#include "store/store.h"

#include "base/fd.h"
#include "store/machine_image.h"

#include <cerrno>
#include <fcntl.h>
#include <set>
#include <unistd.h>

namespace strata {

static Status check_size(std::uint64_t size)
{
    if (size == 0 || size % 512 != 0 || size > layer_format::kMaxVirtualSize)
        return make_error(ErrorKind::Usage, "a disk size must be a non-zero multiple of 512 bytes up to 64 PiB");
    return ok();
}

// Creates an empty writable layer file for a store.
static Result<LayerId> create_layer(Store const& store, std::uint64_t size)
{
    LayerId id = LayerId::random();
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    // Layer::create makes the new file durable (file and directory) before returning.
    STRATA_TRY(Layer::create(store.layer_path(id), size, id, *engine));
    return id;
}

Result<ObjectManifest> Store::create_disk(std::string const& name, std::uint64_t size)
{
    STRATA_TRY(check_object_name(name));
    STRATA_TRY(check_size(size));
    STRATA_TRY(held, lock(true));
    (void)held;
    if (load(ObjectKind::Disk, name))
        return make_error(ErrorKind::Exists, "a disk named '" + name + "' already exists");
    STRATA_TRY(id, create_layer(*this, size));
    ObjectManifest m { ObjectKind::Disk, name, size, { id }, utc_now(), "size", {}, {}, nlohmann::json::object() };
    STRATA_TRY(save(m, true));
    return m;
}

// A new disk over the frozen layers of from. Its writable top is made when the
// disk is first opened for writing (writable_disk), so a clone writes one small
// manifest and nothing else: O(1) and a few hundred microseconds.
Result<ObjectManifest> Store::clone_layers(std::string const& name, ObjectManifest const& from, std::string source)
{
    ObjectManifest m { ObjectKind::Disk, name, from.size, from.layers, utc_now(), std::move(source), {}, {}, nlohmann::json::object() };
    STRATA_TRY(save(m, true));
    return m;
}

Result<ObjectManifest> Store::create_disk_from(std::string const& name, ObjectKind source_kind, std::string const& source)
{
    STRATA_TRY(check_object_name(name));
    if (source_kind == ObjectKind::Disk)
        return make_error(ErrorKind::Usage, "a disk is cloned from an image or a snapshot");
    STRATA_TRY(held, lock(true));
    (void)held;
    if (load(ObjectKind::Disk, name))
        return make_error(ErrorKind::Exists, "a disk named '" + name + "' already exists");
    STRATA_TRY(from, load(source_kind, source));
    return clone_layers(name, from, std::string(kind_name(source_kind)) + ":" + source);
}

// Freezes the disk's top layer in place, so that every layer the disk names is
// frozen and can be shared by a snapshot or an image; a top that is already
// frozen stays as it is. The disk's manifest does not change: its next writable
// open stacks a new top (writable_disk). A VMM holding the disk makes this fail
// (Busy) before anything changes. The store lock is held.
Result<std::vector<LayerId>> Store::freeze_top(ObjectManifest const& disk)
{
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    STRATA_TRY(finish_prepared_push(disk, *engine));
    {
        auto top = Layer::open(layer_path(disk.layers.back()), LayerOpen::ReadOnly, *engine);
        if (!top)
            return top.error().context("disk '" + disk.name + "'");
        if (top.value()->frozen())
            return disk.layers;
    }
    auto top = Layer::open(layer_path(disk.layers.back()), LayerOpen::Writable, *engine);
    if (!top)
        return top.error().context("disk '" + disk.name + "'");
    if (auto frozen = top.value()->freeze(false); !frozen)
        return frozen.error().context("freeze the top layer of disk '" + disk.name + "'");
    return disk.layers;
}

Result<std::vector<LayerId>> Store::freeze_disk(std::string const& disk)
{
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    return freeze_top(d);
}

Result<ObjectManifest> Store::snapshot_disk(std::string const& disk, std::string const& snapshot)
{
    STRATA_TRY(check_object_name(snapshot));
    STRATA_TRY(held, lock(true));
    (void)held;
    if (load(ObjectKind::Snapshot, snapshot))
        return make_error(ErrorKind::Exists, "a snapshot named '" + snapshot + "' already exists");
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    STRATA_TRY(frozen, freeze_top(d));
    ObjectManifest s { ObjectKind::Snapshot, snapshot, d.size, frozen, utc_now(), "disk:" + disk, disk, {},
        nlohmann::json::object() };
    STRATA_TRY(save(s, true));
    return s;
}

Result<LayerId> Store::prepare_push(std::string const& disk)
{
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    STRATA_TRY(id, create_layer(*this, d.size));
    d.layers.push_back(id);
    if (auto saved = save(d, false); !saved) {
        ::unlink(layer_path(id).c_str());
        return saved.error();
    }
    return id;
}

Status Store::cancel_push(std::string const& disk, LayerId const& new_top)
{
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    if (d.layers.empty() || d.layers.back() != new_top)
        return make_error(ErrorKind::Internal, "disk '" + disk + "' no longer ends with layer " + new_top.to_string());
    d.layers.pop_back();
    STRATA_TRY(save(d, false));
    ::unlink(layer_path(new_top).c_str());
    return ok();
}

Status Store::record_snapshot(std::string const& snapshot, std::string const& disk, std::vector<LayerId> const& layers)
{
    STRATA_TRY(check_object_name(snapshot));
    STRATA_TRY(held, lock(true));
    (void)held;
    if (load(ObjectKind::Snapshot, snapshot))
        return make_error(ErrorKind::Exists, "a snapshot named '" + snapshot + "' already exists");
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    ObjectManifest s { ObjectKind::Snapshot, snapshot, d.size, layers, utc_now(), "disk:" + disk, disk, {}, nlohmann::json::object() };
    return save(s, true);
}

Status Store::revert_disk(std::string const& disk, std::string const& snapshot)
{
    STRATA_TRY(refuse_if_suspended_vm_disk(m_root, disk));
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, writable_disk(disk));
    STRATA_TRY(s, load(ObjectKind::Snapshot, snapshot));
    {
        // The disk must not be in use: its top layer's write lock tells.
        STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
        auto top = Layer::open(layer_path(d.layers.back()), LayerOpen::Writable, *engine);
        if (!top)
            return top.error().context("disk '" + disk + "'");
    }
    // The snapshot's layers are all frozen: the writable top comes with the
    // disk's next writable open, as for a clone.
    d.layers = s.layers;
    d.size = s.size;
    STRATA_TRY(save(d, false));
    STRATA_TRY(gc_locked());
    return ok();
}

Status Store::commit_disk(std::string const& disk)
{
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, writable_disk(disk));
    STRATA_TRY(require_complete(d.layers, "commit disk '" + disk + "'"));
    if (d.layers.size() < 3)
        return make_error(ErrorKind::Usage, "disk '" + disk + "' has no frozen layer with a parent to commit into");
    std::size_t index = d.layers.size() - 2; // the top frozen layer
    std::string parent = d.layers[index - 1].to_string();
    for (ObjectKind k : { ObjectKind::Disk, ObjectKind::Snapshot, ObjectKind::Image }) {
        STRATA_TRY(all, load_all(k));
        for (auto const& other : all) {
            if (k == ObjectKind::Disk && other.name == disk)
                continue;
            for (auto const& id : other.layers)
                if (id.to_string() == parent)
                    return make_error(ErrorKind::Busy, "cannot commit disk '" + disk + "': its layer " + parent + " is also used by "
                            + std::string(kind_name(k)) + " '" + other.name + "'");
        }
    }
    // Commit rewrites the parent: a machine image's layer must not change either.
    STRATA_TRY(image_layers, machine_image_layer_refs(m_root));
    if (image_layers.count(parent))
        return make_error(ErrorKind::Busy, "cannot commit disk '" + disk + "': its layer " + parent + " is also used by a machine image");
    std::vector<std::string> paths;
    for (auto const& id : d.layers)
        paths.push_back(layer_path(id));
    {
        STRATA_TRY(chain, Chain::open(paths, ChainOptions { CacheMode::None, EngineKind::Sync, 32, false }));
        STRATA_TRY(chain->commit(index));
    }
    d.layers.erase(d.layers.begin() + static_cast<std::ptrdiff_t>(index));
    STRATA_TRY(save(d, false));
    STRATA_TRY(gc_locked());
    return ok();
}

Status Store::flatten_disk(std::string const& disk)
{
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, writable_disk(disk));
    STRATA_TRY(require_complete(d.layers, "flatten disk '" + disk + "'"));
    std::vector<std::string> paths;
    for (auto const& id : d.layers)
        paths.push_back(layer_path(id));
    LayerId id = LayerId::random();
    {
        STRATA_TRY(chain, Chain::open(paths, ChainOptions { CacheMode::None, EngineKind::Uring, 64, false }));
        STRATA_TRY(chain->flatten_to(layer_path(id), id, false));
    }
    d.layers = { id };
    STRATA_TRY(save(d, false));
    STRATA_TRY(gc_locked());
    return ok();
}

Status Store::resize_disk(std::string const& disk, std::uint64_t new_size)
{
    STRATA_TRY(check_size(new_size));
    STRATA_TRY(refuse_if_suspended_vm_disk(m_root, disk));
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(d, writable_disk(disk));
    if (new_size < d.size)
        return make_error(ErrorKind::Usage, "disks only grow: '" + disk + "' is " + std::to_string(d.size) + " bytes");
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    STRATA_TRY(top, Layer::open(layer_path(d.layers.back()), LayerOpen::Writable, *engine));
    STRATA_TRY(top->resize(new_size));
    STRATA_TRY(top->flush());
    d.size = new_size;
    return save(d, false);
}

Result<std::vector<std::string>> Store::layer_paths(ObjectKind kind, std::string const& name)
{
    STRATA_TRY(held, lock(false));
    (void)held;
    STRATA_TRY(d, load(kind, name));
    std::vector<std::string> paths;
    for (auto const& id : d.layers)
        paths.push_back(layer_path(id));
    return paths;
}

Result<bool> Store::disk_held_for_writing(std::string const& disk) const
{
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    std::size_t const from = d.layers.size() > 2 ? d.layers.size() - 2 : 0;
    for (std::size_t i = from; i < d.layers.size(); ++i) {
        Fd fd(::open(layer_path(d.layers[i]).c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) {
            if (errno == ENOENT)
                continue;
            return errno_error("open layer '" + layer_path(d.layers[i]) + "'");
        }
        // A read lock conflicts only with a write lock: readers of a shared
        // frozen layer (other VMs' chains) do not count.
        struct flock fl {};
        fl.l_type = F_RDLCK;
        fl.l_whence = SEEK_SET;
        if (::fcntl(fd.get(), F_OFD_GETLK, &fl) != 0)
            return errno_error("test the lock of layer '" + layer_path(d.layers[i]) + "'");
        if (fl.l_type != F_UNLCK)
            return true;
    }
    return false;
}

// A VMM killed after Store::prepare_push but before it froze the disk's old top
// leaves the manifest naming a writable layer below the top. The VMM had paused
// (or never resumed) the disk's queues, so the new top is empty and the old top
// holds every write: freezing it finishes the push without loss. Taking the old
// top's write lock tells a dead VMM from a live one mid-capture (Busy).
Status Store::finish_prepared_push(ObjectManifest const& d, IoEngine& engine)
{
    if (d.layers.size() < 2)
        return ok();
    auto below = Layer::open(layer_path(d.layers[d.layers.size() - 2]), LayerOpen::ReadOnly, engine);
    if (!below || below.value()->frozen())
        return ok();
    below.value().reset();
    STRATA_TRY(top, Layer::open(layer_path(d.layers.back()), LayerOpen::ReadOnly, engine));
    if (!top->map().empty())
        return make_error(ErrorKind::BadInput, "disk '" + d.name + "': layer " + d.layers[d.layers.size() - 2].to_string()
                + " is writable but has layers above it holding data; the disk needs repair by hand");
    top.reset();
    auto old_top = Layer::open(layer_path(d.layers[d.layers.size() - 2]), LayerOpen::Writable, engine);
    if (!old_top)
        return old_top.error().context("disk '" + d.name + "'");
    auto frozen = old_top.value()->freeze(false);
    if (!frozen)
        return frozen.error().context("disk '" + d.name + "': finish an interrupted capture");
    return ok();
}

Result<ObjectManifest> Store::writable_disk(std::string const& disk)
{
    STRATA_TRY(d, load(ObjectKind::Disk, disk));
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    STRATA_TRY(finish_prepared_push(d, *engine));
    // A disk whose last layer is frozen gets its writable top now: a clone starts
    // that way (clone_layers makes none), and so does a disk after a snapshot or
    // an image of it (freeze_top freezes in place).
    auto top = Layer::open(layer_path(d.layers.back()), LayerOpen::ReadOnly, *engine);
    if (top && top.value()->frozen()) {
        std::uint64_t size = top.value()->size();
        top.value().reset();
        STRATA_TRY(id, create_layer(*this, size));
        d.layers.push_back(id);
        if (auto saved = save(d, false); !saved) {
            ::unlink(layer_path(id).c_str());
            return saved.error();
        }
    }
    return d;
}

Result<std::unique_ptr<Chain>> Store::open_disk(std::string const& disk, ChainOptions const& options, std::string const& as_vm)
{
    STRATA_TRY(refuse_if_suspended_vm_disk(m_root, disk, as_vm));
    std::vector<std::string> paths;
    if (options.read_only) {
        STRATA_TRY(p, layer_paths(ObjectKind::Disk, disk));
        paths = std::move(p);
    } else {
        STRATA_TRY(held, lock(true));
        (void)held;
        STRATA_TRY(d, writable_disk(disk));
        for (auto const& id : d.layers)
            paths.push_back(layer_path(id));
    }
    auto chain = Chain::open(paths, options);
    if (!chain)
        return chain.error().context("open disk '" + disk + "'");
    return std::move(chain.value());
}

} // namespace strata
