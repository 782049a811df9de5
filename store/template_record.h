// Instance templates ($STRATA_HOME/instance-templates/<name>.json): configuration
// only, no data — the machine spec (vm_record.h: CPUs, memory, boot artifacts by
// digest, cmdline), the image the boot disk of each VM is cloned from, the sizes
// of extra empty disks, the disks' rate limits, labels, metadata and a
// description. `strata vms create
// --template T` makes a VM from one.
//
// Threading: value types and pure functions; the store functions run under a
// record lock the caller holds (record_files.h).
#pragma once

#include "store/vm_record.h"

namespace strata {

// An extra disk: a new empty store disk of size bytes for each VM.
struct TemplateDisk {
    std::string id;
    std::uint64_t size { 0 };
    bool read_only { false };
    bool scratch { false };
    std::string cache { "none" };
    RateLimiterConfig rate_limit {}; // as VmDisk's
    std::string rate_limit_group {};
};

struct TemplateRecord {
    std::string name;
    MachineSpec spec;
    std::string boot_image; // an image in the store; the boot disk (id "boot") clones it
    // The boot disk's rate limit and group (VmDisk's fields for the disk "boot").
    RateLimiterConfig boot_rate_limit;
    std::string boot_rate_limit_group;
    std::vector<TemplateDisk> disks;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> metadata;
    std::string description;
    std::string created;
};

// Checks everything but the existence of the image and artifacts.
[[nodiscard]] Status check_template(TemplateRecord const& t);
nlohmann::json template_json(TemplateRecord const& t);
std::string encode_template(TemplateRecord const& t);
[[nodiscard]] Result<TemplateRecord> parse_template(std::string_view text);

[[nodiscard]] Result<TemplateRecord> load_template(RecordLock const& held, std::string const& name);
[[nodiscard]] Result<std::vector<TemplateRecord>> list_templates(RecordLock const& held);
// Exclusive lock; every boot artifact must be in the store.
[[nodiscard]] Status save_template(RecordLock const& held, TemplateRecord const& t, bool must_be_new);

} // namespace strata
