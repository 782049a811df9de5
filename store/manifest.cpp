#include "store/manifest.h"

#include <ctime>

namespace strata {

using nlohmann::json;

std::string_view kind_name(ObjectKind kind)
{
    switch (kind) {
    case ObjectKind::Disk: return "disk";
    case ObjectKind::Snapshot: return "snapshot";
    case ObjectKind::Image: return "image";
    }
    return "disk";
}

Status check_object_name(std::string_view name)
{
    auto bad = [&](std::string const& why) {
        return make_error(ErrorKind::Usage, "invalid name '" + std::string(name.substr(0, 64)) + "': " + why);
    };
    if (name.empty() || name.size() > kMaxObjectName)
        return bad("names are 1 to " + std::to_string(kMaxObjectName) + " bytes long");
    if (name == "." || name == ".." || name.find("..") != std::string_view::npos)
        return bad("'..' is not allowed");
    if (name.find('/') != std::string_view::npos)
        return bad("'/' is not allowed");
    if (name.front() == '.' || name.front() == '-')
        return bad("a name may not start with '.' or '-'");
    for (char c : name)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return bad("control characters are not allowed");
    return ok();
}

json object_json(ObjectManifest const& m)
{
    json layers = json::array();
    for (auto const& id : m.layers)
        layers.push_back(id.to_string());
    json j { { "kind", kind_name(m.kind) }, { "name", m.name }, { "size", m.size }, { "layers", layers },
        { "created", m.created }, { "source", m.source }, { "description", m.description }, { "labels", m.labels } };
    if (m.kind == ObjectKind::Snapshot)
        j["source_disk"] = m.source_disk;
    return j;
}

std::string encode_object(ObjectManifest const& m)
{
    return object_json(m).dump(2) + "\n";
}

static Error bad_manifest(std::string const& what)
{
    return make_error(ErrorKind::BadInput, "manifest: " + what);
}

static Result<std::string> opt_string(json const& j, char const* key)
{
    auto it = j.find(key);
    if (it == j.end())
        return std::string();
    if (!it->is_string() || it->get_ref<std::string const&>().size() > 4096)
        return bad_manifest(std::string("'") + key + "' is not a string of at most 4096 bytes");
    return it->get<std::string>();
}

Result<ObjectManifest> parse_object(std::string_view text, ObjectKind kind)
{
    if (text.size() > kMaxManifestBytes)
        return bad_manifest("larger than 1 MiB");
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return bad_manifest("not a JSON object");
    ObjectManifest m;
    m.kind = kind;
    auto k = j.find("kind");
    if (k == j.end() || !k->is_string() || k->get<std::string>() != kind_name(kind))
        return bad_manifest("'kind' is not \"" + std::string(kind_name(kind)) + "\"");
    auto name = j.find("name");
    if (name == j.end() || !name->is_string())
        return bad_manifest("'name' is missing");
    m.name = name->get<std::string>();
    if (auto s = check_object_name(m.name); !s)
        return bad_manifest(s.error().message);
    auto size = j.find("size");
    if (size == j.end() || !size->is_number_unsigned())
        return bad_manifest("'size' is not an unsigned integer");
    m.size = size->get<std::uint64_t>();
    if (m.size == 0 || m.size % 512 != 0 || m.size > layer_format::kMaxVirtualSize)
        return bad_manifest("'size' must be a non-zero multiple of 512 up to 2^56");
    auto layers = j.find("layers");
    if (layers == j.end() || !layers->is_array() || layers->empty() || layers->size() > kMaxManifestLayers)
        return bad_manifest("'layers' must list 1 to " + std::to_string(kMaxManifestLayers) + " layer IDs");
    for (auto const& l : *layers) {
        if (!l.is_string())
            return bad_manifest("a layer ID is not a string");
        auto id = LayerId::parse(l.get<std::string>());
        if (!id)
            return bad_manifest("bad layer ID '" + l.get<std::string>().substr(0, 64) + "'");
        m.layers.push_back(id.value());
    }
    STRATA_TRY(created, opt_string(j, "created"));
    STRATA_TRY(source, opt_string(j, "source"));
    STRATA_TRY(source_disk, opt_string(j, "source_disk"));
    STRATA_TRY(description, opt_string(j, "description"));
    m.created = created;
    m.source = source;
    m.source_disk = source_disk;
    m.description = description;
    auto labels = j.find("labels");
    if (labels != j.end()) {
        if (!labels->is_object())
            return bad_manifest("'labels' is not an object");
        for (auto const& [key, value] : labels->items())
            if (!value.is_string())
                return bad_manifest("label '" + key.substr(0, 64) + "' is not a string");
        m.labels = *labels;
    }
    return m;
}

std::string utc_now()
{
    std::time_t t = std::time(nullptr);
    std::tm tm {};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

} // namespace strata
