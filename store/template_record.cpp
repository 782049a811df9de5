#include "store/template_record.h"

#include "store/artifacts.h"
#include "imaging/layer/layer_format.h"
#include "store/manifest.h"
#include "store/rate_limit_record.h"

#include <set>

namespace strata {

using nlohmann::json;
using namespace record_json;

Status check_template(TemplateRecord const& t)
{
    STRATA_TRY(check_object_name(t.name));
    STRATA_TRY(check_spec(t.spec));
    STRATA_TRY(check_object_name(t.boot_image));
    if (t.disks.size() + 1 > kMaxRecordDisks)
        return make_error(ErrorKind::Usage, "a template has at most " + std::to_string(kMaxRecordDisks - 1) + " extra disks");
    std::set<std::string> ids { "boot" };
    // The disks as a VM made from the template gets them, for their rate limits.
    std::vector<VmDisk> as_vm { VmDisk { "boot", "boot", false, true, false, "none", true, t.boot_rate_limit, t.boot_rate_limit_group } };
    for (auto const& d : t.disks) {
        as_vm.push_back(VmDisk { d.id, "disk-" + d.id, d.read_only, false, d.scratch, d.cache, true, d.rate_limit, d.rate_limit_group });
        STRATA_TRY(check_disk_id(d.id));
        STRATA_TRY(check_cache(d.cache));
        if (!ids.insert(d.id).second)
            return make_error(ErrorKind::Usage, "two disks have the id '" + d.id + "' (\"boot\" is the boot disk's)");
        if (d.size == 0 || d.size % 512 != 0 || d.size > layer_format::kMaxVirtualSize)
            return make_error(ErrorKind::Usage, "disk '" + d.id + "': a size must be a non-zero multiple of 512 bytes up to 64 PiB");
    }
    STRATA_TRY(check_vm_disks(as_vm));
    STRATA_TRY(check_labels(t.labels));
    STRATA_TRY(check_metadata(t.metadata));
    return ok();
}

json template_json(TemplateRecord const& t)
{
    json disks = json::array();
    for (auto const& d : t.disks) {
        json one { { "id", d.id }, { "size", d.size }, { "read_only", d.read_only }, { "scratch", d.scratch }, { "cache", d.cache } };
        put_disk_rate_limit(one, d.rate_limit, d.rate_limit_group);
        disks.push_back(one);
    }
    json j = spec_json(t.spec);
    j["kind"] = "instance-template";
    j["name"] = t.name;
    j["boot_image"] = t.boot_image;
    j["disks"] = disks;
    // Written only when set, so templates without it read as before.
    json boot_disk = json::object();
    put_disk_rate_limit(boot_disk, t.boot_rate_limit, t.boot_rate_limit_group);
    if (!boot_disk.empty())
        j["boot_disk"] = boot_disk;
    j["labels"] = from_map(t.labels);
    j["metadata"] = from_map(t.metadata);
    j["description"] = t.description;
    j["created"] = t.created;
    return j;
}

std::string encode_template(TemplateRecord const& t)
{
    return template_json(t).dump(2) + "\n";
}

Result<TemplateRecord> parse_template(std::string_view text)
{
    if (text.size() > kMaxManifestBytes)
        return bad("template record", "larger than 1 MiB");
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return bad("template record", "not a JSON object");
    auto kind = j.find("kind");
    if (kind == j.end() || *kind != "instance-template")
        return bad("template record", "'kind' is not \"instance-template\"");
    TemplateRecord t;
    STRATA_TRY(name, string_field(j, "name", true, kMaxObjectName));
    STRATA_TRY(spec, parse_spec(j));
    STRATA_TRY(image, string_field(j, "boot_image", true, kMaxObjectName));
    t.name = name;
    t.spec = spec;
    t.boot_image = image;
    auto disks = j.find("disks");
    if (disks != j.end()) {
        if (!disks->is_array() || disks->size() >= kMaxRecordDisks)
            return bad("template record", "'disks' is not an array of at most " + std::to_string(kMaxRecordDisks - 1));
        for (auto const& d : *disks) {
            if (!d.is_object())
                return bad("template record", "a disk is not an object");
            STRATA_TRY(id, string_field(d, "id", true, 20));
            STRATA_TRY(size, uint_field(d, "size", true, 512, layer_format::kMaxVirtualSize));
            STRATA_TRY(read_only, bool_field(d, "read_only"));
            STRATA_TRY(scratch, bool_field(d, "scratch"));
            STRATA_TRY(cache, string_field(d, "cache", false, 16));
            TemplateDisk disk { id, size, read_only, scratch, cache.empty() ? "none" : cache, {}, {} };
            STRATA_TRY(get_disk_rate_limit(d, "template record", disk.rate_limit, disk.rate_limit_group));
            t.disks.push_back(disk);
        }
    }
    if (auto boot_disk = j.find("boot_disk"); boot_disk != j.end()) {
        if (!boot_disk->is_object())
            return bad("template record", "'boot_disk' is not an object");
        STRATA_TRY(get_disk_rate_limit(*boot_disk, "template record", t.boot_rate_limit, t.boot_rate_limit_group));
    }
    STRATA_TRY(labels, string_map(j, "labels"));
    STRATA_TRY(metadata, string_map(j, "metadata"));
    STRATA_TRY(description, string_field(j, "description", false));
    STRATA_TRY(created, string_field(j, "created", false, 64));
    t.labels = labels;
    t.metadata = metadata;
    t.description = description;
    t.created = created;
    if (auto st = check_template(t); !st)
        return bad("template record", st.error().message);
    return t;
}

Result<TemplateRecord> load_template(RecordLock const& held, std::string const& name)
{
    STRATA_TRY(text, read_record(held.root(), RecordKind::Template, name));
    auto t = parse_template(text);
    if (!t)
        return t.error().context("instance-template '" + name + "'");
    if (t.value().name != name)
        return make_error(ErrorKind::BadInput, "the record of instance-template '" + name + "' names '" + t.value().name + "'");
    return t;
}

Result<std::vector<TemplateRecord>> list_templates(RecordLock const& held)
{
    STRATA_TRY(names, record_names(held.root(), RecordKind::Template));
    std::vector<TemplateRecord> out;
    for (auto const& n : names) {
        STRATA_TRY(t, load_template(held, n));
        out.push_back(std::move(t));
    }
    return out;
}

Status save_template(RecordLock const& held, TemplateRecord const& t, bool must_be_new)
{
    STRATA_TRY(held.require_exclusive());
    STRATA_TRY(check_template(t));
    for (auto const& d : boot_digests(t.spec.boot))
        STRATA_TRY(require_artifact(held, d));
    return write_record(held.root(), RecordKind::Template, t.name, encode_template(t), must_be_new);
}

} // namespace strata
