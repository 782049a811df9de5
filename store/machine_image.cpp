#include "store/machine_image.h"

#include "store/artifacts.h"
#include "imaging/layer/layer.h"
#include "store/manifest.h"
#include "store/store.h"

#include <cstdio>

namespace strata {

using nlohmann::json;
using namespace record_json;

Status check_machine_image(MachineImageRecord const& m)
{
    STRATA_TRY(check_object_name(m.name));
    STRATA_TRY(check_spec(m.spec));
    if (m.disks.size() > kMaxRecordDisks)
        return make_error(ErrorKind::Usage, "a machine image has at most " + std::to_string(kMaxRecordDisks) + " disks");
    std::vector<VmDisk> mapping;
    for (auto const& d : m.disks) {
        // The disk names are placeholders: check_vm_disks checks ids, cache and boot.
        mapping.push_back(VmDisk { d.id, "disk-" + d.id, d.read_only, d.boot, d.scratch, d.cache, false });
        if (d.size == 0 || d.size % 512 != 0 || d.size > layer_format::kMaxVirtualSize)
            return make_error(ErrorKind::Usage, "disk '" + d.id + "': bad size");
        if (d.scratch != d.layers.empty())
            return make_error(ErrorKind::Usage, "disk '" + d.id + "': a scratch disk has no layers, any other at least one");
        if (d.layers.size() > kMaxManifestLayers)
            return make_error(ErrorKind::Usage, "disk '" + d.id + "': too many layers");
        if (!d.layer_name.empty())
            STRATA_TRY(check_object_name(d.layer_name));
    }
    STRATA_TRY(check_vm_disks(mapping));
    STRATA_TRY(check_labels(m.labels));
    STRATA_TRY(check_labels(m.source_vm.labels));
    STRATA_TRY(check_metadata(m.source_vm.metadata));
    if (!m.source_vm.name.empty())
        STRATA_TRY(check_object_name(m.source_vm.name));
    return ok();
}

json machine_image_json(MachineImageRecord const& m)
{
    json disks = json::array();
    for (auto const& d : m.disks) {
        json layers = json::array();
        for (auto const& id : d.layers)
            layers.push_back(id.to_string());
        disks.push_back(json { { "id", d.id }, { "read_only", d.read_only }, { "boot", d.boot }, { "scratch", d.scratch },
            { "cache", d.cache }, { "size", d.size }, { "layers", layers }, { "layer_name", d.layer_name } });
    }
    json j = spec_json(m.spec);
    j["kind"] = "machine-image";
    j["name"] = m.name;
    j["disks"] = disks;
    j["description"] = m.description;
    j["labels"] = from_map(m.labels);
    j["source_vm"] = json { { "name", m.source_vm.name }, { "labels", from_map(m.source_vm.labels) },
        { "metadata", from_map(m.source_vm.metadata) } };
    if (!m.source_vm.instance_id.empty())
        j["source_vm"]["instance_id"] = m.source_vm.instance_id;
    j["created"] = m.created;
    j["stall_us"] = m.stall_us;
    j["generalized"] = m.generalized;
    j["os_state"] = m.generalized ? "generalized" : "specialized";
    j["source"] = m.source;
    if (!m.guest_flush.empty())
        j["guest_flush"] = m.guest_flush;
    j["state"] = m.running ? "running" : "stopped";
    return j;
}

std::filesystem::path machine_state_dir(std::string const& store_root, std::string const& image)
{
    return std::filesystem::path(store_root) / "machine-state" / image;
}

std::string encode_machine_image(MachineImageRecord const& m)
{
    return machine_image_json(m).dump(2) + "\n";
}

Result<MachineImageRecord> parse_machine_image_json(json const& j)
{
    if (!j.is_object())
        return bad("machine-image record", "not a JSON object");
    auto kind = j.find("kind");
    if (kind == j.end() || *kind != "machine-image")
        return bad("machine-image record", "'kind' is not \"machine-image\"");
    MachineImageRecord m;
    STRATA_TRY(name, string_field(j, "name", true, kMaxObjectName));
    STRATA_TRY(spec, parse_spec(j));
    m.name = name;
    m.spec = spec;
    auto disks = j.find("disks");
    if (disks == j.end() || !disks->is_array() || disks->size() > kMaxRecordDisks)
        return bad("machine-image record", "'disks' is not an array of at most " + std::to_string(kMaxRecordDisks));
    for (auto const& d : *disks) {
        if (!d.is_object())
            return bad("machine-image record", "a disk is not an object");
        MachineImageDisk disk;
        STRATA_TRY(id, string_field(d, "id", true, 20));
        STRATA_TRY(read_only, bool_field(d, "read_only"));
        STRATA_TRY(boot, bool_field(d, "boot"));
        STRATA_TRY(scratch, bool_field(d, "scratch"));
        STRATA_TRY(cache, string_field(d, "cache", false, 16));
        STRATA_TRY(size, uint_field(d, "size", true, 512, layer_format::kMaxVirtualSize));
        STRATA_TRY(layer_name, string_field(d, "layer_name", false, kMaxObjectName));
        disk = MachineImageDisk { id, read_only, boot, scratch, cache.empty() ? "none" : cache, size, {}, layer_name };
        auto layers = d.find("layers");
        if (layers == d.end() || !layers->is_array() || layers->size() > kMaxManifestLayers)
            return bad("machine-image record", "disk '" + id + "': 'layers' is not an array of at most 500 layer IDs");
        for (auto const& l : *layers) {
            if (!l.is_string())
                return bad("machine-image record", "a layer ID is not a string");
            auto lid = LayerId::parse(l.get<std::string>());
            if (!lid)
                return bad("machine-image record", "bad layer ID '" + l.get<std::string>().substr(0, 64) + "'");
            disk.layers.push_back(lid.value());
        }
        m.disks.push_back(std::move(disk));
    }
    STRATA_TRY(description, string_field(j, "description", false));
    STRATA_TRY(labels, string_map(j, "labels"));
    m.description = description;
    m.labels = labels;
    auto src = j.find("source_vm");
    if (src != j.end()) {
        if (!src->is_object())
            return bad("machine-image record", "'source_vm' is not an object");
        STRATA_TRY(vm_name, string_field(*src, "name", false, kMaxObjectName));
        STRATA_TRY(vm_labels, string_map(*src, "labels"));
        STRATA_TRY(vm_metadata, string_map(*src, "metadata"));
        STRATA_TRY(instance_id, string_field(*src, "instance_id", false, 64));
        if (auto st = check_instance_id(instance_id); !st)
            return bad("machine-image record", st.error().message);
        m.source_vm = SourceVmInfo { vm_name, vm_labels, vm_metadata, instance_id };
    }
    STRATA_TRY(created, string_field(j, "created", false, 64));
    STRATA_TRY(stall, uint_field(j, "stall_us", false, 0, ~0ULL));
    STRATA_TRY(generalized, bool_field(j, "generalized"));
    STRATA_TRY(source, string_field(j, "source", false, 256));
    STRATA_TRY(os_state, string_field(j, "os_state", false, 16));
    if (!os_state.empty()) {
        if (os_state != "generalized" && os_state != "specialized")
            return bad("machine-image record", "'os_state' is neither \"generalized\" nor \"specialized\"");
        if (j.contains("generalized") && generalized != (os_state == "generalized"))
            return bad("machine-image record", "'os_state' contradicts 'generalized'");
        generalized = os_state == "generalized";
    }
    STRATA_TRY(guest_flush, string_field(j, "guest_flush", false, 1024));
    if (!guest_flush.empty() && guest_flush != "quiesced" && !guest_flush.starts_with("not-quiesced: "))
        return bad("machine-image record", "'guest_flush' is neither \"quiesced\" nor \"not-quiesced: ...\"");
    m.guest_flush = guest_flush;
    STRATA_TRY(state, string_field(j, "state", false, 16));
    if (!state.empty() && state != "running" && state != "stopped")
        return bad("machine-image record", "'state' is neither \"running\" nor \"stopped\"");
    m.running = state == "running";
    m.created = created;
    m.stall_us = stall;
    m.generalized = generalized;
    m.source = source;
    if (auto st = check_machine_image(m); !st)
        return bad("machine-image record", st.error().message);
    return m;
}

Result<MachineImageRecord> parse_machine_image(std::string_view text)
{
    if (text.size() > kMaxManifestBytes)
        return bad("machine-image record", "larger than 1 MiB");
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded())
        return bad("machine-image record", "not JSON");
    return parse_machine_image_json(j);
}

namespace {

Result<MachineImageRecord> load_unlocked(std::string const& root, std::string const& name)
{
    STRATA_TRY(text, read_record(root, RecordKind::MachineImage, name));
    auto m = parse_machine_image(text);
    if (!m)
        return m.error().context("machine-image '" + name + "'");
    if (m.value().name != name)
        return make_error(ErrorKind::BadInput, "the record of machine-image '" + name + "' names '" + m.value().name + "'");
    return m;
}

Result<std::vector<MachineImageRecord>> list_unlocked(std::string const& root)
{
    STRATA_TRY(names, record_names(root, RecordKind::MachineImage));
    std::vector<MachineImageRecord> out;
    for (auto const& n : names) {
        STRATA_TRY(m, load_unlocked(root, n));
        out.push_back(std::move(m));
    }
    return out;
}

} // namespace

Result<MachineImageRecord> load_machine_image(RecordLock const& held, std::string const& name)
{
    return load_unlocked(held.root(), name);
}

Result<std::vector<MachineImageRecord>> list_machine_images(RecordLock const& held)
{
    return list_unlocked(held.root());
}

Result<std::set<std::string>> machine_image_layer_refs(std::string const& store_root)
{
    STRATA_TRY(all, list_unlocked(store_root));
    std::set<std::string> used;
    for (auto const& m : all)
        for (auto const& d : m.disks)
            for (auto const& id : d.layers)
                used.insert(id.to_string());
    return used;
}

std::string next_layer_name(std::vector<MachineImageRecord> const& existing, std::string const& image, std::string const& id,
    std::string const& date)
{
    std::set<std::string> taken;
    for (auto const& m : existing)
        for (auto const& d : m.disks)
            taken.insert(d.layer_name);
    std::string base = image + "-disk-" + id + "-" + date;
    if (!taken.count(base))
        return base;
    for (unsigned n = 2;; ++n) {
        char suffix[16];
        std::snprintf(suffix, sizeof suffix, "-%02u", n);
        if (!taken.count(base + suffix))
            return base + suffix;
    }
}

Status record_machine_image(RecordLock const& held, MachineImageRecord record)
{
    STRATA_TRY(held.require_exclusive());
    if (record.created.empty())
        record.created = utc_now();
    STRATA_TRY(existing, list_unlocked(held.root()));
    for (auto const& m : existing)
        if (m.name == record.name)
            return make_error(ErrorKind::Exists, "a machine-image named '" + record.name + "' already exists");
    std::string date = record.created.substr(0, 10);
    for (auto& d : record.disks)
        if (!d.scratch && d.layer_name.empty()) {
            // Names longer than a store name allows keep their date, not the image name's tail.
            d.layer_name = next_layer_name(existing, record.name, d.id, date);
            if (d.layer_name.size() > kMaxObjectName)
                d.layer_name = d.layer_name.substr(d.layer_name.size() - kMaxObjectName);
        }
    STRATA_TRY(check_machine_image(record));
    for (auto const& digest : boot_digests(record.spec.boot))
        STRATA_TRY(require_artifact(held, digest));
    // Every layer must be in the store and frozen: a record naming a writable or
    // missing layer would be an image whose data can still change or is gone.
    STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
    for (auto const& d : record.disks) {
        for (auto const& id : d.layers) {
            std::string path = held.root() + "/layers/" + id.to_string();
            auto layer = Layer::open(path, LayerOpen::ReadOnly, *engine, LayerOptions { .cache = CacheMode::Writeback });
            if (!layer)
                return layer.error().context("machine-image '" + record.name + "', disk '" + d.id + "', layer " + id.to_string());
            if (!layer.value()->frozen())
                return make_error(ErrorKind::Usage,
                    "machine-image '" + record.name + "': layer " + id.to_string() + " of disk '" + d.id + "' is not frozen");
        }
    }
    return write_record(held.root(), RecordKind::MachineImage, record.name, encode_machine_image(record), true);
}

Status check_machine_image_name_free(Store& store, std::string const& name)
{
    STRATA_TRY(check_object_name(name));
    STRATA_TRY(ensure_record_dirs(store.root()));
    STRATA_TRY(held, RecordLock::take(store.root(), false));
    STRATA_TRY(existing, list_unlocked(held.root()));
    for (auto const& m : existing)
        if (m.name == name)
            return make_error(ErrorKind::Exists, "a machine-image named '" + name + "' already exists");
    return ok();
}

Status record_machine_image(Store& store, MachineImageRecord const& record)
{
    STRATA_TRY(ensure_record_dirs(store.root()));
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    return record_machine_image(held, record);
}

} // namespace strata
