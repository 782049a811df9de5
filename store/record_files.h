// Record files: the JSON records of VMs, instance templates and machine images in
// a store ($STRATA_HOME/{vms,instance-templates,machine-images}/<name>.json), as
// files. This module owns how such a record is locked, read (size-capped: the
// text is hostile input for the parsers of vm_record.h, template_record.h and
// machine_image.h), written (temp + fsync + rename + directory fsync: a reader
// or a crash sees the old record or the new one, never a mix), listed and
// removed, plus the checks shared by their fields (labels, metadata, digests).
//
// Locking. These records live beside the Store's manifests and must be
// serialized with the Store's garbage collection (a record that names a layer or
// an artifact must never be written while GC decides what is unused). RecordLock
// takes the same OFD lock on store.lock that Store takes, through a descriptor
// of its own: OFD locks conflict between descriptions even inside one process,
// so the exclusion holds across processes and threads alike. Never call a Store
// method while holding a RecordLock: the Store would wait for it forever.
//
// Threading: RecordLock is owned by one thread; the functions are reentrant.
#pragma once

#include "base/result.h"

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

class Store;

enum class RecordKind { Vm, Template, MachineImage };

// "vm", "instance-template", "machine-image" (messages); folders are the plurals.
std::string_view record_kind_name(RecordKind kind);
std::string record_dir(std::string const& store_root, RecordKind kind);
std::string record_path(std::string const& store_root, RecordKind kind, std::string const& name);

// Creates the record folders and artifacts/ under an opened store.
[[nodiscard]] Status ensure_record_dirs(std::string const& store_root);

class RecordLock {
public:
    [[nodiscard]] static Result<RecordLock> take(std::string const& store_root, bool exclusive);
    RecordLock(RecordLock&& other) noexcept;
    RecordLock& operator=(RecordLock&&) = delete;
    RecordLock(RecordLock const&) = delete;
    ~RecordLock();

    // Functions that need the lock take a RecordLock const& as proof of holding it.
    std::string const& root() const { return m_root; }
    bool exclusive() const { return m_exclusive; }
    // Usage error unless held exclusively (for functions that change the store).
    [[nodiscard]] Status require_exclusive() const;

private:
    RecordLock() = default;
    int m_fd { -1 };
    std::string m_root;
    bool m_exclusive { false };
};

// The record's text (NotFound with a clear message when absent; at most 1 MiB).
[[nodiscard]] Result<std::string> read_record(std::string const& store_root, RecordKind kind, std::string const& name);
// Writes atomically; with must_be_new, an existing record makes it fail (Exists).
[[nodiscard]] Status write_record(std::string const& store_root, RecordKind kind, std::string const& name,
    std::string const& text, bool must_be_new);
[[nodiscard]] Status remove_record(std::string const& store_root, RecordKind kind, std::string const& name);
// The names of the records of a kind, sorted (temporary and hidden files skipped).
[[nodiscard]] Result<std::vector<std::string>> record_names(std::string const& store_root, RecordKind kind);

// GCP's label rules: keys 1-63 of a-z 0-9 _ - starting with a letter; values 0-63
// of a-z 0-9 _ -; at most 64 labels.
[[nodiscard]] Status check_labels(std::map<std::string, std::string> const& labels);
// Metadata: keys 1-128 of A-Z a-z 0-9 _ -; values up to 4096 bytes without NUL;
// at most 128 entries.
[[nodiscard]] Status check_metadata(std::map<std::string, std::string> const& metadata);
// "k=v,k2=v2" (the CLI's form) into a map; empty text gives an empty map.
[[nodiscard]] Result<std::map<std::string, std::string>> parse_key_values(std::string const& text, std::string_view what);

// JSON field helpers for the record parsers: each checks type and bounds and
// names the field in its BadInput error.
namespace record_json {
[[nodiscard]] Result<std::string> string_field(nlohmann::json const& j, char const* key, bool required, std::size_t max = 4096);
[[nodiscard]] Result<std::uint64_t> uint_field(nlohmann::json const& j, char const* key, bool required, std::uint64_t min,
    std::uint64_t max, std::uint64_t fallback = 0);
[[nodiscard]] Result<bool> bool_field(nlohmann::json const& j, char const* key, bool fallback = false);
[[nodiscard]] Result<std::map<std::string, std::string>> string_map(nlohmann::json const& j, char const* key);
nlohmann::json from_map(std::map<std::string, std::string> const& m);
Error bad(std::string_view what, std::string const& why);
} // namespace record_json

} // namespace strata
