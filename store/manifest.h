// Store manifests: the JSON records of disks, snapshots and images in a store
// ($STRATA_HOME/{disks,snapshots,images}/<name>.json). A manifest names its
// layers by ID (bottom first), never by path. This module owns the manifest's
// fields, its JSON form, the parser (hostile input: every field is type- and
// range-checked; a fuzz target drives it) and the rule for object names.
//
// Threading: pure functions and value types.
#pragma once

#include "base/result.h"
#include "imaging/layer/layer_format.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

enum class ObjectKind { Disk, Snapshot, Image };

// "disk", "snapshot", "image"; the folder is the plural.
std::string_view kind_name(ObjectKind kind);

inline constexpr std::size_t kMaxObjectName = 128;
inline constexpr std::size_t kMaxManifestLayers = 500;
inline constexpr std::size_t kMaxManifestBytes = 1 << 20;

// Names: 1..128 bytes; no '/', no NUL or other control characters, not "." or
// "..", no leading '.' or '-' (hidden files, options).
[[nodiscard]] Status check_object_name(std::string_view name);

struct ObjectManifest {
    ObjectKind kind { ObjectKind::Disk };
    std::string name;
    std::uint64_t size { 0 };      // virtual size in bytes
    std::vector<LayerId> layers;   // bottom..top; a disk's top is writable, all others frozen
    std::string created;           // UTC, ISO 8601
    std::string source;            // how it was made: "size", "image:NAME", "snapshot:NAME", "disk:NAME", "import:qcow2"...
    std::string source_disk;       // snapshots: the disk they were taken of
    std::string description;
    nlohmann::json labels = nlohmann::json::object(); // string -> string
};

std::string encode_object(ObjectManifest const& m);
nlohmann::json object_json(ObjectManifest const& m);
[[nodiscard]] Result<ObjectManifest> parse_object(std::string_view text, ObjectKind kind);

// The current time as ISO 8601 UTC ("2025-01-31T12:00:00Z").
std::string utc_now();

} // namespace strata
