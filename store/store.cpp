// Store: opening, locking, manifest I/O, listing, describe, delete and garbage
// collection. Disk operations are in store_disks.cpp, images in store_images.cpp.
#include "store/store.h"
#include "store/vm_record.h"

#include "base/fd.h"
#include "store/machine_image.h"

#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

StoreLock::~StoreLock()
{
    if (m_fd < 0)
        return;
    struct flock fl {};
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    ::fcntl(m_fd, F_OFD_SETLK, &fl);
}

std::string Store::default_root()
{
    if (char const* home = ::getenv("STRATA_HOME"); home != nullptr && *home != '\0')
        return home;
    char const* user_home = ::getenv("HOME");
    return std::string(user_home != nullptr ? user_home : ".") + "/.local/share/strata";
}

static Status make_dir(std::string const& path)
{
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
        return errno_error("create directory '" + path + "'");
    return ok();
}

Result<std::unique_ptr<Store>> Store::open(std::string const& root)
{
    std::unique_ptr<Store> s(new Store());
    s->m_root = root;
    // Create the root's parents too (~/.local/share may not exist yet).
    for (std::size_t pos = 1; pos != std::string::npos;) {
        pos = root.find('/', pos + 1);
        STRATA_TRY(make_dir(root.substr(0, pos)));
    }
    for (char const* sub : { "/layers", "/disks", "/snapshots", "/images", "/tmp" })
        STRATA_TRY(make_dir(root + sub));
    s->m_lock_fd = ::open((root + "/store.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->m_lock_fd < 0)
        return errno_error("open '" + root + "/store.lock'");
    return s;
}

Store::~Store()
{
    // Any lock still held is released explicitly before the close (layer.h, Locks).
    if (m_lock_fd >= 0) {
        struct flock fl {};
        fl.l_type = F_UNLCK;
        fl.l_whence = SEEK_SET;
        (void)::fcntl(m_lock_fd, F_OFD_SETLK, &fl);
        ::close(m_lock_fd);
    }
}

Result<Store::Lock> Store::lock(bool exclusive)
{
    struct flock fl {};
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    while (::fcntl(m_lock_fd, F_OFD_SETLKW, &fl) != 0) {
        if (errno != EINTR)
            return errno_error("lock the store '" + m_root + "'");
    }
    return Lock(m_lock_fd);
}

std::string Store::layer_path(LayerId const& id) const
{
    return m_root + "/layers/" + id.to_string();
}

std::string Store::manifest_path(ObjectKind kind, std::string const& name) const
{
    return m_root + "/" + std::string(kind_name(kind)) + "s/" + name + ".json";
}

Result<ObjectManifest> Store::load(ObjectKind kind, std::string const& name) const
{
    STRATA_TRY(check_object_name(name));
    std::string path = manifest_path(kind, name);
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        if (errno == ENOENT)
            return make_error(ErrorKind::NotFound, "no " + std::string(kind_name(kind)) + " named '" + name + "'");
        return errno_error("open '" + path + "'");
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    if (static_cast<std::uint64_t>(st.st_size) > kMaxManifestBytes)
        return make_error(ErrorKind::BadInput, "manifest '" + path + "' is larger than 1 MiB");
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    // SAFETY: the string's storage is viewed as bytes to read into.
    STRATA_TRY(pread_all(fd.get(), std::span(reinterpret_cast<std::byte*>(text.data()), text.size()), 0));
    auto m = parse_object(text, kind);
    if (!m)
        return m.error().context("'" + path + "'");
    if (m.value().name != name)
        return make_error(ErrorKind::BadInput, "manifest '" + path + "' names '" + m.value().name + "'");
    return m;
}

Status Store::save(ObjectManifest const& m, bool must_be_new)
{
    STRATA_TRY(check_object_name(m.name));
    std::string path = manifest_path(m.kind, m.name);
    STRATA_TRY(file, AtomicFile::create(path));
    std::string text = encode_object(m);
    // SAFETY: the text's bytes, viewed as bytes.
    STRATA_TRY(pwrite_all(file.fd(), std::span(reinterpret_cast<std::byte const*>(text.data()), text.size()), 0));
    auto status = file.commit(must_be_new);
    if (!status && status.error().kind == ErrorKind::Exists)
        return make_error(ErrorKind::Exists, "a " + std::string(kind_name(m.kind)) + " named '" + m.name + "' already exists");
    return status;
}

Result<std::vector<ObjectManifest>> Store::load_all(ObjectKind kind) const
{
    std::string dir = m_root + "/" + std::string(kind_name(kind)) + "s";
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d)
        return errno_error("list '" + dir + "'");
    std::vector<ObjectManifest> out;
    while (dirent* e = ::readdir(d.get())) {
        std::string n = e->d_name;
        if (n.size() <= 5 || n[0] == '.' || n.compare(n.size() - 5, 5, ".json") != 0)
            continue;
        STRATA_TRY(m, load(kind, n.substr(0, n.size() - 5)));
        out.push_back(std::move(m));
    }
    std::sort(out.begin(), out.end(), [](auto const& a, auto const& b) { return a.name < b.name; });
    return out;
}

Result<std::vector<ObjectManifest>> Store::list(ObjectKind kind)
{
    STRATA_TRY(held, lock(false));
    (void)held;
    return load_all(kind);
}

Result<ObjectManifest> Store::get(ObjectKind kind, std::string const& name)
{
    STRATA_TRY(held, lock(false));
    (void)held;
    return load(kind, name);
}

Result<ObjectDetails> Store::describe(ObjectKind kind, std::string const& name)
{
    STRATA_TRY(held, lock(false));
    (void)held;
    ObjectDetails d;
    STRATA_TRY(m, load(kind, name));
    d.manifest = m;
    for (std::size_t i = 0; i < m.layers.size(); ++i) {
        struct stat st {};
        std::uint64_t bytes = 0;
        if (::stat(layer_path(m.layers[i]).c_str(), &st) == 0)
            bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
        // Every layer but a disk's top is frozen (manifest invariant).
        d.layers.push_back({ m.layers[i], bytes, kind != ObjectKind::Disk || i + 1 < m.layers.size() });
    }
    std::set<std::string> mine;
    for (auto const& id : m.layers)
        mine.insert(id.to_string());
    for (ObjectKind k : { ObjectKind::Disk, ObjectKind::Snapshot, ObjectKind::Image }) {
        STRATA_TRY(all, load_all(k));
        for (auto const& other : all) {
            if (k == kind && other.name == name)
                continue;
            for (auto const& id : other.layers)
                if (mine.count(id.to_string())) {
                    d.used_by.push_back(std::string(kind_name(k)) + ":" + other.name);
                    break;
                }
        }
    }
    return d;
}

Status Store::remove(ObjectKind kind, std::string const& name)
{
    STRATA_TRY(held, lock(true));
    (void)held;
    STRATA_TRY(m, load(kind, name));
    if (kind == ObjectKind::Disk) {
        // Refuse to delete a disk a VM has open: its top layer is write-locked.
        STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
        auto top = Layer::open(layer_path(m.layers.back()), LayerOpen::Writable, *engine);
        if (!top && top.error().kind == ErrorKind::Busy)
            return top.error().context("disk '" + name + "' is in use");
        // A stopped VM does not hold the lock, but its record names the disk.
        STRATA_TRY(users, vms_using_disk(m_root, name));
        if (!users.empty())
            return make_error(ErrorKind::Busy, "disk '" + name + "' is used by vm '" + users.front() + "'; delete the vm first");
    }
    std::string path = manifest_path(kind, name);
    if (::unlink(path.c_str()) != 0)
        return errno_error("remove '" + path + "'");
    STRATA_TRY(fsync_parent_dir(path));
    STRATA_TRY(gc_locked());
    return ok();
}

Result<GcReport> Store::gc()
{
    STRATA_TRY(held, lock(true));
    (void)held;
    return gc_locked();
}

// Removes layer files no manifest names. Runs under the exclusive lock, so no
// manifest can gain a reference while it decides.
Result<GcReport> Store::gc_locked()
{
    std::set<std::string> used;
    for (ObjectKind k : { ObjectKind::Disk, ObjectKind::Snapshot, ObjectKind::Image }) {
        // A manifest that cannot be read stops the collection: never guess.
        STRATA_TRY(all, load_all(k));
        for (auto const& m : all)
            for (auto const& id : m.layers)
                used.insert(id.to_string());
    }
    // Machine images (machine_image.h) name layers too.
    STRATA_TRY(image_layers, machine_image_layer_refs(m_root));
    used.insert(image_layers.begin(), image_layers.end());
    GcReport report;
    std::string dir = m_root + "/layers";
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d)
        return errno_error("list '" + dir + "'");
    std::vector<std::string> victims;
    while (dirent* e = ::readdir(d.get())) {
        std::string n = e->d_name;
        auto id = LayerId::parse(n);
        // Only files named exactly as a layer ID are ever removed.
        if (!id || id.value().to_string() != n || used.count(n))
            continue;
        victims.push_back(n);
    }
    for (auto const& n : victims) {
        if (::unlink((dir + "/" + n).c_str()) == 0)
            report.removed.push_back(n);
    }
    if (!victims.empty())
        STRATA_TRY(fsync_parent_dir(dir + "/x"));
    return report;
}

} // namespace strata
