// Store: images whose layers were made outside the store's own operations (a
// registry pull): finding layers by their content digest and recording an image
// over layers already present and layers built under tmp/.
#include "store/store.h"

#include "base/fd.h"
#include "imaging/layer/layer.h"

#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

Result<std::vector<std::pair<LayerId, Sha256>>> Store::layer_digests()
{
    STRATA_TRY(held, lock(false));
    (void)held;
    std::vector<std::pair<LayerId, Sha256>> out;
    std::vector<LayerId> legacy;
    std::string dir = m_root + "/layers";
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
        return errno_error("open '" + dir + "'");
    std::vector<std::string> names;
    while (auto* e = ::readdir(d))
        names.emplace_back(e->d_name);
    ::closedir(d);
    for (auto const& name : names) {
        auto id = LayerId::parse(name);
        if (!id)
            continue;
        Fd fd(::open((dir + "/" + name).c_str(), O_RDONLY | O_CLOEXEC));
        struct stat st {};
        if (!fd.valid() || ::fstat(fd.get(), &st) != 0)
            continue;
        // The current header is the valid slot with the higher generation.
        std::optional<LayerHeader> best;
        std::vector<std::byte> slot(layer_format::kSlotSize);
        for (std::uint64_t at : { std::uint64_t { 0 }, layer_format::kSlotSize }) {
            if (!pread_all(fd.get(), slot, at))
                continue;
            auto h = decode_header(slot, static_cast<std::uint64_t>(st.st_size));
            if (h && (!best || h.value().generation > best->generation))
                best = h.value();
        }
        if (!best || best->state != LayerState::Frozen || !best->has_digest() || best->id != id.value())
            continue;
        if (best->has_content_digest())
            out.emplace_back(id.value(), best->digest);
        else
            legacy.push_back(id.value());
    }
    // A digest an older strata recorded is valid only if the layer's map says
    // so (Layer::digest): those layers are opened.
    if (!legacy.empty()) {
        STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
        for (auto const& id : legacy) {
            auto layer = Layer::open(layer_path(id), LayerOpen::ReadOnly, *engine);
            if (!layer)
                continue;
            if (auto digest = layer.value()->digest())
                out.emplace_back(id, *digest);
        }
    }
    return out;
}

Result<ObjectManifest> Store::adopt_image(ObjectManifest m, std::vector<LayerId> const& from_tmp)
{
    STRATA_TRY(check_object_name(m.name));
    if (m.layers.empty() || m.layers.size() > kMaxManifestLayers)
        return make_error(ErrorKind::BadInput, "an image has 1 to " + std::to_string(kMaxManifestLayers) + " layers");
    m.kind = ObjectKind::Image;
    STRATA_TRY(held, lock(true));
    (void)held;
    if (load(ObjectKind::Image, m.name))
        return make_error(ErrorKind::Exists, "an image named '" + m.name + "' already exists");
    for (auto const& id : m.layers) {
        bool fresh = std::find(from_tmp.begin(), from_tmp.end(), id) != from_tmp.end();
        struct stat st {};
        std::string path = fresh ? tmp_dir() + "/" + id.to_string() : layer_path(id);
        if (::stat(path.c_str(), &st) != 0)
            return errno_error(std::string(fresh ? "pulled" : "reused") + " layer " + id.to_string());
    }
    std::vector<std::string> moved;
    Status status = ok();
    for (auto const& id : from_tmp) {
        std::string from = tmp_dir() + "/" + id.to_string();
        if (::rename(from.c_str(), layer_path(id).c_str()) != 0) {
            status = errno_error("move pulled layer into the store");
            break;
        }
        moved.push_back(layer_path(id));
    }
    if (status && !moved.empty())
        status = fsync_parent_dir(moved.front());
    if (status)
        status = save(m, true);
    if (!status) {
        // Layers moved in but named by nothing are collected; the image was never recorded.
        (void)gc_locked();
        return status.error();
    }
    return m;
}

} // namespace strata
