// Machine images through registries (REGISTRY.md, "Machine images"): the record
// in the config blob, every non-scratch disk's layers as layer blobs (disk by
// disk, bottom first, annotated with the disk id), and each boot artifact as one
// blob whose digest is the artifact's own.
#include "registry/transfer.h"
#include "registry/transfer_detail.h"

#include "imaging/archive/archive_format.h"
#include "store/artifacts.h"
#include "store/machine_image_store.h"

#include <unistd.h>

namespace strata::registry {

using nlohmann::json;
using namespace detail;

Result<PushResult> push_machine_image(Store& store, std::string const& name, Reference const& ref, TransferOptions const& options)
{
    STRATA_TRY(ensure_record_dirs(store.root()));
    MachineImageRecord m;
    std::vector<std::pair<std::string, std::vector<std::byte>>> artifacts;
    {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        STRATA_TRY(record, load_machine_image(held, name));
        m = record;
        for (auto const& digest : boot_digests(m.spec.boot)) {
            STRATA_TRY(bytes, read_artifact(held, digest));
            artifacts.emplace_back(digest, std::move(bytes));
        }
    }
    STRATA_TRY(ensure_dirs(store));
    STRATA_TRY(client, RegistryClient::create(ref, options.client));
    PushResult result;
    // A registry carries a machine image's disks and boot artifacts, not a
    // running-state image's saved memory and device state (those live only in
    // the store and in archives). The pushed record therefore says "stopped", so
    // that VMs from the pulled image boot from its disks instead of failing on a
    // restore that has nothing to restore from.
    if (m.running) {
        m.running = false;
        result.notes.push_back("machine image '" + name + "' is a running-state image; a registry carries its disks only, "
                               "so VMs from the pulled image boot instead of restoring (use machine-images export to carry memory)");
    }
    json layers = json::array(), disks = json::array();
    for (auto const& d : m.disks) {
        json contents = json::array();
        for (auto const& id : d.layers) {
            LayerBlob b;
            STRATA_TRY(push_layer(store, *client, id, options, b, result.stats));
            for (auto& desc : layer_descriptors(b, d.id))
                layers.push_back(std::move(desc));
            contents.push_back(b.content);
        }
        disks.push_back({ { "id", d.id }, { "layers", contents } });
    }
    for (auto const& [digest, bytes] : artifacts) {
        std::string_view view(reinterpret_cast<char const*>(bytes.data()), bytes.size());
        STRATA_TRY(push_bytes(*client, std::string(view), result.stats));
        layers.push_back({ { "mediaType", kBootArtifactType }, { "digest", "sha256:" + digest }, { "size", bytes.size() } });
    }
    json config { { "kind", "machine-image" }, { "name", m.name }, { "record", machine_image_json(m) }, { "disks", disks } };
    std::string config_bytes = config.dump();
    STRATA_TRY(push_bytes(*client, config_bytes, result.stats));
    json manifest { { "schemaVersion", 2 }, { "mediaType", kOciManifestType }, { "artifactType", kMachineImageArtifactType },
        { "config", { { "mediaType", kMachineImageConfigType }, { "digest", digest_of(config_bytes) }, { "size", config_bytes.size() } } },
        { "layers", layers }, { "annotations", { { "org.opencontainers.image.created", m.created }, { "org.strata.name", m.name } } } };
    std::string bytes = manifest.dump();
    if (!ref.digest.empty() && ref.digest != digest_of(bytes))
        return make_error(ErrorKind::Usage, "the reference pins digest " + ref.digest + " but the machine image's manifest is " + digest_of(bytes));
    STRATA_TRY(digest, client->put_manifest(ref.tag.empty() ? digest_of(bytes) : ref.tag, kOciManifestType, bytes));
    result.digest = digest;
    tidy_registry_files(store);
    return result;
}

Result<MachinePullResult> pull_machine_image(Store& store, Reference const& ref, std::string name, TransferOptions const& options)
{
    if (name.empty())
        name = ref.repository.substr(ref.repository.rfind('/') + 1);
    STRATA_TRY(check_object_name(name));
    STRATA_TRY(ensure_record_dirs(store.root()));
    {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        if (read_record(held.root(), RecordKind::MachineImage, name))
            return make_error(ErrorKind::Exists, "a machine-image named '" + name + "' already exists");
    }
    STRATA_TRY(client, RegistryClient::create(ref, options.client));
    STRATA_TRY(got, get_strata_manifest(*client, kMachineImageArtifactType, kMachineImageConfigType));
    MachinePullResult result;
    result.digest = got.digest;
    if (!got.config.contains("record"))
        return bad(ref.to_string() + ": the machine image config holds no record");
    STRATA_TRY(parsed, parse_machine_image_json(got.config["record"]));
    MachineImageRecord m = parsed;
    m.name = name;
    m.source = "import";
    // No pull brings a saved machine (see push): a record that claims one would
    // make every VM from it fail to restore.
    m.running = false;

    // The manifest's layer blobs, disk by disk in the record's order, then the
    // boot artifacts the record names.
    auto const& jl = got.manifest["layers"];
    if (jl.size() > archive::kMaxEntries)
        return bad(ref.to_string() + ": the manifest lists too many blobs");
    std::vector<WantedLayer> descriptors;
    for (auto const& l : jl) {
        if (!l.is_object() || l.value("mediaType", std::string()) != kLayerBlobType)
            continue;
        STRATA_TRY(w, parse_layer_descriptor(l, archive::kMaxEntrySize, ref.to_string()));
        descriptors.push_back(w);
    }
    STRATA_TRY(wanted, group_parts(std::move(descriptors), ref.to_string()));
    // Which of the manifest's layers each disk takes, and the boot artifacts,
    // checked in full before anything is fetched or tidied: a refused pull
    // changes nothing.
    std::vector<std::vector<std::size_t>> disk_layers(m.disks.size());
    std::size_t next = 0;
    for (std::size_t k = 0; k < m.disks.size(); ++k) {
        auto const& d = m.disks[k];
        if (d.scratch)
            continue;
        std::size_t count = d.layers.size();
        if (count == 0 || count > kMaxManifestLayers)
            return bad(ref.to_string() + ": disk '" + d.id + "' has no layers");
        for (std::size_t i = 0; i < count; ++i, ++next) {
            if (next >= wanted.size())
                return bad(ref.to_string() + ": the manifest has fewer layers than the record's disks");
            auto const& w = wanted[next];
            if (w.disk != d.id)
                return bad(ref.to_string() + ": layer " + std::to_string(next) + " is not disk '" + d.id + "''s");
            if (w.layer_size > d.size)
                return bad(ref.to_string() + ": a layer is larger than its disk");
            disk_layers[k].push_back(next);
        }
    }
    for (auto const& digest : boot_digests(m.spec.boot)) {
        bool listed = false;
        for (auto const& l : jl)
            listed = listed || (l.is_object() && l.value("mediaType", std::string()) == kBootArtifactType && l.value("digest", std::string()) == "sha256:" + digest);
        if (!listed)
            return bad(ref.to_string() + ": the manifest lacks the boot artifact " + digest.substr(0, 12));
    }
    // Accepted: only now may the pull tidy what earlier ones left.
    STRATA_TRY(ensure_dirs(store));
    tidy_registry_files(store);
    Fetched f;
    for (std::size_t k = 0; k < m.disks.size(); ++k) {
        auto& d = m.disks[k];
        if (d.scratch)
            continue;
        d.layers.clear();
        for (std::size_t i = 0; i < disk_layers[k].size(); ++i) {
            std::size_t before = f.ids.size();
            STRATA_TRY(fetch_layer(store, *client, wanted[disk_layers[k][i]], i == 0, f, result.stats, options));
            d.layers.push_back(f.ids[before]);
        }
        d.layer_name.clear(); // named afresh in this store
    }
    std::vector<std::pair<std::string, std::string>> artifacts;
    for (auto const& digest : boot_digests(m.spec.boot)) {
        // The store keeps artifacts by digest: one it has is not fetched again.
        if (::access(artifact_path(store.root(), digest).c_str(), F_OK) == 0)
            continue;
        STRATA_TRY(bytes, client->fetch_blob("sha256:" + digest, 1ULL << 30));
        result.stats.bytes_downloaded += bytes.size();
        ++result.stats.blobs_downloaded;
        artifacts.emplace_back(digest, std::move(bytes));
    }
    STRATA_TRY(save_records(store, f));

    // Into the store under the exclusive lock: layers, artifacts, then the record.
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    std::vector<std::string> moved;
    auto undo = [&] {
        for (auto const& p : moved)
            ::unlink(p.c_str());
    };
    for (auto const& id : f.fresh) {
        std::string to = store.layer_path(id);
        if (::rename((store.tmp_dir() + "/" + id.to_string()).c_str(), to.c_str()) != 0) {
            undo();
            return errno_error("move a pulled layer into the store");
        }
        moved.push_back(to);
    }
    if (!moved.empty())
        if (auto synced = fsync_parent_dir(moved.front()); !synced) {
            undo();
            return synced.error();
        }
    for (auto const& [digest, bytes] : artifacts) {
        auto span = std::as_bytes(std::span(bytes.data(), bytes.size()));
        if (auto put = put_artifact_bytes(held, span, digest); !put) {
            undo();
            return put.error();
        }
    }
    m.created = m.created.empty() ? utc_now() : m.created;
    if (auto rec = record_machine_image(held, m); !rec) {
        undo();
        (void)gc_artifacts(held);
        return rec.error();
    }
    recorded(f);
    STRATA_TRY(loaded, load_machine_image(held, name));
    result.image = loaded;
    return result;
}

} // namespace strata::registry
