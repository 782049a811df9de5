// The API's request parser; see request.h.
#include "vmm/api/request.h"

#include "vmm/api/json_fields.h"
#include "base/ipv4.h"

#include <nlohmann/json.hpp>

namespace strata::api {

namespace {

Error usage(std::string message)
{
    return make_error(ErrorKind::Usage, std::move(message));
}

bool has_control_character(std::string_view text)
{
    for (char c : text) {
        auto const byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f)
            return true;
    }
    return false;
}

// A host path as the VMM will open it: JSON allows "\u0000" inside strings, which
// would silently cut the path short at the open() call, so control characters are
// refused along with empty and overlong paths.
Status check_host_path(char const* field, std::string const& path)
{
    if (path.empty())
        return usage(std::string("`") + field + "` is empty.");
    if (path.size() > max_path_bytes)
        return usage(std::string("`") + field + "` is longer than " + std::to_string(max_path_bytes) + " bytes.");
    if (has_control_character(path))
        return usage(std::string("`") + field + "` contains a control character.");
    return ok();
}

Result<nlohmann::json> parse_json(std::string_view body)
{
    if (body.empty())
        return usage("The request body is empty.");
    // allow_exceptions=false: malformed JSON (and invalid UTF-8 in strings) yields
    // a discarded value instead of throwing.
    auto value = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (value.is_discarded())
        return body_error("the body is not valid JSON");
    return value;
}

Result<ApiRequest> parse_boot_source(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "kernel_image_path", "firmware_path", "initrd_path", "boot_args" }));
    STRATA_TRY(kernel, reader.string("kernel_image_path"));
    STRATA_TRY(firmware, reader.string("firmware_path"));
    STRATA_TRY(initrd, reader.string("initrd_path"));
    STRATA_TRY(boot_args, reader.string("boot_args"));
    if (kernel.has_value() == firmware.has_value())
        return usage("Exactly one of `kernel_image_path` and `firmware_path` must be given.");
    BootSource source;
    source.kernel_image_path = kernel.value_or("");
    source.firmware_path = firmware.value_or("");
    STRATA_TRY(check_host_path(kernel ? "kernel_image_path" : "firmware_path", kernel ? *kernel : *firmware));
    if (initrd) {
        STRATA_TRY(check_host_path("initrd_path", *initrd));
        source.initrd_path = *initrd;
    }
    if (boot_args) {
        if (boot_args->size() > max_boot_args_bytes)
            return usage("`boot_args` is longer than " + std::to_string(max_boot_args_bytes) + " bytes.");
        if (has_control_character(*boot_args))
            return usage("`boot_args` contains a control character.");
        source.boot_args = *boot_args;
    }
    return ApiRequest { source };
}

Result<ApiRequest> parse_machine_config(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "vcpu_count", "mem_size_mib", "cpu_template", "smt", "track_dirty_pages" }));
    STRATA_TRY(track_dirty, reader.boolean("track_dirty_pages"));
    STRATA_TRY(vcpus, reader.unsigned_integer("vcpu_count"));
    STRATA_TRY(mem, reader.unsigned_integer("mem_size_mib"));
    STRATA_TRY(cpu_template, reader.string("cpu_template"));
    STRATA_TRY(smt, reader.boolean("smt"));
    if (!vcpus)
        return ObjectReader::missing("vcpu_count");
    if (!mem)
        return ObjectReader::missing("mem_size_mib");
    if (*vcpus < 1 || *vcpus > MachineConfig::max_vcpus)
        return usage("The vCPU number is invalid! `vcpu_count` must be between 1 and " + std::to_string(MachineConfig::max_vcpus) + ".");
    if (*mem < min_mem_size_mib || *mem > max_mem_size_mib)
        return usage("The memory size (MiB) is invalid! `mem_size_mib` must be between " + std::to_string(min_mem_size_mib) + " and "
            + std::to_string(max_mem_size_mib) + ".");
    MachineSettings settings;
    settings.vcpu_count = static_cast<std::uint32_t>(*vcpus);
    settings.mem_size_mib = *mem;
    if (cpu_template) {
        // "None" is Firecracker's name for no template, which is strata's "host".
        if (*cpu_template == "None" || *cpu_template == "host")
            settings.cpu_template = CpuTemplate::Host;
        else if (*cpu_template == "minimal")
            settings.cpu_template = CpuTemplate::Minimal;
        else
            return body_error("unknown variant `" + quote_for_message(*cpu_template) + "` for `cpu_template`, expected one of `None`, `host`, `minimal`");
    }
    if (smt.value_or(false))
        return make_error(ErrorKind::Unsupported, "Enabling simultaneous multithreading is not supported.");
    settings.track_dirty_pages = track_dirty.value_or(false);
    return ApiRequest { settings };
}

Result<TokenBucketConfig> parse_bucket(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "size", "one_time_burst", "refill_time" }));
    STRATA_TRY(size, reader.unsigned_integer("size"));
    STRATA_TRY(burst, reader.unsigned_integer("one_time_burst"));
    STRATA_TRY(refill, reader.unsigned_integer("refill_time"));
    if (!size)
        return ObjectReader::missing("size");
    if (!refill)
        return ObjectReader::missing("refill_time");
    return TokenBucketConfig { *size, burst.value_or(0), *refill };
}

// A rate limiter field of `outer` ({"bandwidth": bucket, "ops": bucket}):
// nullopt when absent or null; an absent or null bucket is no limit.
Result<std::optional<RateLimiterConfig>> parse_rate_limiter(ObjectReader const& outer, char const* field)
{
    STRATA_TRY(object, outer.object(field));
    if (!object)
        return std::optional<RateLimiterConfig>();
    STRATA_TRY(reader, ObjectReader::open(**object, { "bandwidth", "ops" }));
    RateLimiterConfig config;
    STRATA_TRY(bandwidth, reader.object("bandwidth"));
    STRATA_TRY(ops, reader.object("ops"));
    if (bandwidth) {
        STRATA_TRY(b, parse_bucket(**bandwidth));
        config.bandwidth = b;
    }
    if (ops) {
        STRATA_TRY(o, parse_bucket(**ops));
        config.ops = o;
    }
    if (auto checked = check_rate_limiter(config); !checked)
        return usage(std::string("`") + field + "`: " + checked.error().message + ".");
    return std::optional<RateLimiterConfig>(config);
}

Result<ApiRequest> parse_drive_update(std::string_view path_id, nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "drive_id", "rate_limiter" }));
    STRATA_TRY(id, reader.string("drive_id"));
    if (!id)
        return ObjectReader::missing("drive_id");
    if (*id != path_id)
        return usage("The id from the path does not match the id from the body!");
    STRATA_TRY(config, parse_rate_limiter(reader, "rate_limiter"));
    if (!config)
        return ObjectReader::missing("rate_limiter");
    return ApiRequest { DriveUpdate { *id, *config } };
}

// PUT /network-interfaces/{id}. The tap name and MAC are checked here with the
// rules of the interface's parser (vmm/net_config.h) so a bad one is a 400 before
// anything is stored; whether the tap exists is found when the VM starts.
Result<ApiRequest> parse_network_interface(std::string_view path_id, nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "iface_id", "host_dev_name", "guest_mac", "rx_rate_limiter", "tx_rate_limiter" }));
    STRATA_TRY(id, reader.string("iface_id"));
    STRATA_TRY(tap, reader.string("host_dev_name"));
    STRATA_TRY(mac, reader.string("guest_mac"));
    if (!id)
        return ObjectReader::missing("iface_id");
    if (!tap)
        return ObjectReader::missing("host_dev_name");
    if (*id != path_id)
        return usage("The id from the path does not match the id from the body!");
    NetworkInterfaceConfig net;
    net.iface_id = *id;
    net.host_dev_name = *tap;
    net.guest_mac = mac.value_or("");
    STRATA_TRY(rx, parse_rate_limiter(reader, "rx_rate_limiter"));
    STRATA_TRY(tx, parse_rate_limiter(reader, "tx_rate_limiter"));
    net.rx_rate_limiter = rx.value_or(RateLimiterConfig {});
    net.tx_rate_limiter = tx.value_or(RateLimiterConfig {});
    return ApiRequest { net };
}

// PATCH /network-interfaces/{id}.
Result<ApiRequest> parse_network_interface_update(std::string_view path_id, nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "iface_id", "rx_rate_limiter", "tx_rate_limiter" }));
    STRATA_TRY(id, reader.string("iface_id"));
    if (!id)
        return ObjectReader::missing("iface_id");
    if (*id != path_id)
        return usage("The id from the path does not match the id from the body!");
    NetworkInterfaceUpdate update;
    update.iface_id = *id;
    STRATA_TRY(rx, parse_rate_limiter(reader, "rx_rate_limiter"));
    STRATA_TRY(tx, parse_rate_limiter(reader, "tx_rate_limiter"));
    update.rx_rate_limiter = rx;
    update.tx_rate_limiter = tx;
    return ApiRequest { update };
}

Result<ApiRequest> parse_drive(std::string_view path_id, nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "drive_id", "path_on_host", "disk_name", "is_read_only", "is_root_device", "cache_type", "scratch", "rate_limiter",
        "rate_limit_group" }));
    STRATA_TRY(id, reader.string("drive_id"));
    STRATA_TRY(path, reader.string("path_on_host"));
    STRATA_TRY(disk, reader.string("disk_name"));
    STRATA_TRY(read_only, reader.boolean("is_read_only"));
    STRATA_TRY(root, reader.boolean("is_root_device"));
    STRATA_TRY(cache, reader.string("cache_type"));
    STRATA_TRY(scratch, reader.boolean("scratch"));
    STRATA_TRY(rate_limiter, parse_rate_limiter(reader, "rate_limiter"));
    STRATA_TRY(group, reader.string("rate_limit_group"));
    if (!id)
        return ObjectReader::missing("drive_id");
    if (!root)
        return ObjectReader::missing("is_root_device");
    if (*id != path_id)
        return usage("The id from the path does not match the id from the body!");
    if (path.has_value() == disk.has_value())
        return usage("Exactly one of `path_on_host` and `disk_name` must be given.");
    DriveConfig drive;
    drive.drive_id = *id;
    if (path) {
        STRATA_TRY(check_host_path("path_on_host", *path));
        drive.path_on_host = *path;
    } else {
        STRATA_TRY(check_name("disk_name", *disk));
        drive.disk_name = *disk;
    }
    drive.is_read_only = read_only.value_or(false);
    drive.is_root_device = *root;
    drive.scratch = scratch.value_or(false);
    drive.rate_limiter = rate_limiter.value_or(RateLimiterConfig {});
    if (group) {
        if (!valid_rate_limit_group(*group))
            return usage("`rate_limit_group` '" + quote_for_message(*group) + "' must be 1-20 letters, digits, '-', '_' or '.'.");
        drive.rate_limit_group = *group;
    }
    if (cache) {
        if (*cache == "Unsafe")
            drive.cache_type = CacheType::Unsafe;
        else if (*cache == "Writeback")
            drive.cache_type = CacheType::Writeback;
        else
            return body_error("unknown variant `" + quote_for_message(*cache) + "` for `cache_type`, expected `Unsafe` or `Writeback`");
    }
    // A machine image without its boot disk's data could not boot.
    if (drive.scratch && drive.is_root_device)
        return usage("A root device cannot be a scratch disk.");
    return ApiRequest { drive };
}

Result<ApiRequest> parse_action(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "action_type" }));
    STRATA_TRY(type, reader.string("action_type"));
    if (!type)
        return ObjectReader::missing("action_type");
    if (*type == "InstanceStart")
        return ApiRequest { InstanceAction { ActionType::InstanceStart } };
    if (*type == "SendCtrlAltDel")
        return ApiRequest { InstanceAction { ActionType::SendCtrlAltDel } };
    if (*type == "FlushMetrics")
        return make_error(ErrorKind::Unsupported, "FlushMetrics is not supported; read GET /metrics instead.");
    return body_error("unknown variant `" + quote_for_message(*type) + "` for `action_type`, expected `InstanceStart` or `SendCtrlAltDel`");
}

Result<ApiRequest> parse_vm_state(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "state" }));
    STRATA_TRY(state, reader.string("state"));
    if (!state)
        return ObjectReader::missing("state");
    if (*state == "Paused")
        return ApiRequest { VmStateChange { true } };
    if (*state == "Resumed")
        return ApiRequest { VmStateChange { false } };
    return body_error("unknown variant `" + quote_for_message(*state) + "` for `state`, expected `Paused` or `Resumed`");
}

Result<ApiRequest> parse_snapshot_disks(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "snapshot_name" }));
    STRATA_TRY(name, reader.string("snapshot_name"));
    if (!name)
        return ObjectReader::missing("snapshot_name");
    STRATA_TRY(check_name("snapshot_name", *name));
    return ApiRequest { SnapshotDisksRequest { *name } };
}

Result<ApiRequest> parse_snapshot_create(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "snapshot_type", "snapshot_path", "mem_file_path", "version" }));
    STRATA_TRY(type, reader.string("snapshot_type"));
    STRATA_TRY(snapshot_path, reader.string("snapshot_path"));
    STRATA_TRY(mem_file_path, reader.string("mem_file_path"));
    STRATA_TRY(version, reader.string("version"));
    if (!snapshot_path)
        return ObjectReader::missing("snapshot_path");
    if (!mem_file_path)
        return ObjectReader::missing("mem_file_path");
    STRATA_TRY(check_host_path("snapshot_path", *snapshot_path));
    STRATA_TRY(check_host_path("mem_file_path", *mem_file_path));
    if (version)
        return make_error(ErrorKind::Unsupported, "`version` is not supported: strata writes its own snapshot format version only.");
    SnapshotCreateRequest request;
    if (type && *type != "Full" && *type != "Diff")
        return body_error("unknown variant `" + quote_for_message(*type) + "` for `snapshot_type`, expected `Full` or `Diff`");
    request.diff = type && *type == "Diff";
    request.snapshot_path = *snapshot_path;
    request.mem_file_path = *mem_file_path;
    return ApiRequest { std::move(request) };
}

Result<ApiRequest> parse_snapshot_load(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "snapshot_path", "mem_file_path", "mem_backend", "enable_diff_snapshots", "resume_vm", "network_overrides" }));
    STRATA_TRY(snapshot_path, reader.string("snapshot_path"));
    STRATA_TRY(mem_file_path, reader.string("mem_file_path"));
    STRATA_TRY(backend, reader.object("mem_backend"));
    STRATA_TRY(diff, reader.boolean("enable_diff_snapshots"));
    STRATA_TRY(resume, reader.boolean("resume_vm"));
    if (!snapshot_path)
        return ObjectReader::missing("snapshot_path");
    STRATA_TRY(check_host_path("snapshot_path", *snapshot_path));
    if (mem_file_path.has_value() == backend.has_value())
        return usage("Exactly one of `mem_file_path` and `mem_backend` must be given.");
    SnapshotLoadRequest request;
    request.snapshot_path = *snapshot_path;
    if (mem_file_path) {
        request.mem_file_path = *mem_file_path;
    } else {
        STRATA_TRY(inner, ObjectReader::open(**backend, { "backend_type", "backend_path" }));
        STRATA_TRY(type, inner.string("backend_type"));
        STRATA_TRY(path, inner.string("backend_path"));
        if (!type)
            return ObjectReader::missing("backend_type");
        if (*type == "Uffd")
            return make_error(ErrorKind::Unsupported, "The `Uffd` memory backend is not supported; use `File`.");
        if (*type != "File")
            return body_error("unknown variant `" + quote_for_message(*type) + "` for `backend_type`, expected `File` or `Uffd`");
        if (!path)
            return ObjectReader::missing("backend_path");
        request.mem_file_path = *path;
    }
    STRATA_TRY(check_host_path(mem_file_path ? "mem_file_path" : "backend_path", request.mem_file_path));
    request.enable_diff_snapshots = diff.value_or(false);
    request.resume_vm = resume.value_or(false);
    if (auto it = json.find("network_overrides"); it != json.end()) {
        if (!it->is_array())
            return body_error("`network_overrides` must be an array");
        for (auto const& entry : *it) {
            STRATA_TRY(o, ObjectReader::open(entry, { "iface_id", "host_dev_name" }));
            STRATA_TRY(id, o.string("iface_id"));
            STRATA_TRY(tap, o.string("host_dev_name"));
            if (!id)
                return ObjectReader::missing("iface_id");
            if (!tap)
                return ObjectReader::missing("host_dev_name");
            request.network_overrides.push_back(NetworkOverride { *id, *tap });
        }
    }
    return ApiRequest { std::move(request) };
}

Result<ApiRequest> parse_machine_image(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "name", "description", "labels", "guest_flush", "guest_flush_wait_ms", "memory" }));
    STRATA_TRY(memory, reader.boolean("memory"));
    STRATA_TRY(name, reader.string("name"));
    STRATA_TRY(description, reader.string("description"));
    STRATA_TRY(labels, reader.string_map("labels"));
    STRATA_TRY(guest_flush, reader.boolean("guest_flush"));
    STRATA_TRY(wait, reader.unsigned_integer("guest_flush_wait_ms"));
    if (!name)
        return ObjectReader::missing("name");
    STRATA_TRY(check_name("name", *name));
    MachineImageRequest request;
    request.name = *name;
    if (description) {
        if (description->size() > max_description_bytes)
            return usage("`description` is longer than " + std::to_string(max_description_bytes) + " bytes.");
        if (has_control_character(*description))
            return usage("`description` contains a control character.");
        request.description = *description;
    }
    if (labels) {
        if (labels->size() > max_labels)
            return usage("At most " + std::to_string(max_labels) + " labels are allowed.");
        for (auto const& [key, value] : *labels)
            STRATA_TRY(check_label(key, value));
        request.labels = std::move(*labels);
    }
    request.guest_flush = guest_flush.value_or(false);
    request.memory = memory.value_or(false);
    if (wait) {
        if (*wait < 1 || *wait > max_agent_wait_ms)
            return usage("`guest_flush_wait_ms` must be between 1 and " + std::to_string(max_agent_wait_ms) + ".");
        if (!request.guest_flush)
            return usage("`guest_flush_wait_ms` goes with `guest_flush`: true.");
        request.guest_flush_wait_ms = *wait;
    }
    return ApiRequest { std::move(request) };
}

Result<ApiRequest> parse_agent(nlohmann::json const& json)
{
    STRATA_TRY(reader, ObjectReader::open(json, { "cmd", "timeout_s", "wait_ms" }));
    STRATA_TRY(cmd, reader.string("cmd"));
    STRATA_TRY(timeout, reader.unsigned_integer("timeout_s"));
    STRATA_TRY(wait, reader.unsigned_integer("wait_ms"));
    if (!cmd)
        return ObjectReader::missing("cmd");
    if (*cmd != "ping" && *cmd != "freeze" && *cmd != "thaw" && *cmd != "generalize")
        return body_error("unknown variant `" + quote_for_message(*cmd) + "` for `cmd`, expected one of `ping`, `freeze`, `thaw`, `generalize`");
    AgentCommand command;
    command.cmd = *cmd;
    if (timeout) {
        if (*cmd != "freeze")
            return usage("`timeout_s` goes with the `freeze` command only.");
        if (*timeout < 1 || *timeout > max_agent_freeze_s)
            return usage("`timeout_s` must be between 1 and " + std::to_string(max_agent_freeze_s) + ".");
        command.timeout_s = *timeout;
    }
    if (wait) {
        if (*wait < 1 || *wait > max_agent_wait_ms)
            return usage("`wait_ms` must be between 1 and " + std::to_string(max_agent_wait_ms) + ".");
        command.wait_ms = *wait;
    }
    return ApiRequest { std::move(command) };
}

Error invalid_path(std::string_view method, std::string_view target)
{
    return usage("Invalid request method and/or path: " + quote_for_message(method) + " " + quote_for_message(target) + ".");
}

// GET, PUT and PATCH /mmds; PUT /mmds/config.
Result<ApiRequest> parse_mmds(std::string_view method, std::string_view target, std::string_view body)
{
    if (target == "/mmds" && method == "GET") {
        if (!body.empty())
            return usage("GET request cannot have a body.");
        return ApiRequest { MmdsGet {} };
    }
    if (target == "/mmds" && (method == "PUT" || method == "PATCH")) {
        STRATA_TRY(json, parse_json(body));
        if (!json.is_object())
            return usage("The MMDS data store must be a JSON object.");
        if (method == "PUT")
            return ApiRequest { MmdsPut { json.dump() } };
        return ApiRequest { MmdsPatch { json.dump() } };
    }
    if (target == "/mmds/config" && method == "PUT") {
        STRATA_TRY(json, parse_json(body));
        STRATA_TRY(reader, ObjectReader::open(json, { "network_interfaces", "version", "ipv4_address" }));
        STRATA_TRY(version, reader.string("version"));
        STRATA_TRY(address, reader.string("ipv4_address"));
        MmdsConfigRequest config;
        auto const it = json.find("network_interfaces");
        if (it == json.end())
            return ObjectReader::missing("network_interfaces");
        if (!it->is_array() || it->empty())
            return usage("`network_interfaces` must be a non-empty array of interface ids.");
        for (auto const& id : *it) {
            if (!id.is_string())
                return usage("`network_interfaces` must be a non-empty array of interface ids.");
            STRATA_TRY(check_drive_id(id.get<std::string>()));
            config.network_interfaces.push_back(id.get<std::string>());
        }
        if (version && *version != "V1" && *version != "V2")
            return usage("`version` must be \"V1\" or \"V2\".");
        config.v2 = version && *version == "V2";
        if (address) {
            auto ip = parse_link_local_ipv4(*address);
            if (!ip)
                return usage(ip.error().message);
            config.ipv4 = ip.value();
        }
        return ApiRequest { config };
    }
    return invalid_path(method, target);
}

} // namespace

Result<ApiRequest> parse_request(std::string_view method, std::string_view target, std::string_view body)
{
    if (body.size() > max_body_bytes)
        return usage("The request body is larger than " + std::to_string(max_body_bytes) + " bytes.");

    bool const get = method == "GET";
    if (target == "/mmds" || target == "/mmds/config")
        return parse_mmds(method, target, body);
    if (get && (target == "/" || target == "/vm/config" || target == "/metrics")) {
        if (!body.empty())
            return usage("GET request cannot have a body.");
        if (target == "/")
            return ApiRequest { GetInstanceInfo {} };
        if (target == "/vm/config")
            return ApiRequest { GetVmConfig {} };
        return ApiRequest { GetMetrics {} };
    }

    constexpr std::string_view drives_prefix = "/drives/";
    constexpr std::string_view nets_prefix = "/network-interfaces/";
    if (method == "PUT") {
        Result<ApiRequest> (*parse)(nlohmann::json const&) = nullptr;
        if (target == "/boot-source")
            parse = parse_boot_source;
        else if (target == "/machine-config")
            parse = parse_machine_config;
        else if (target == "/actions")
            parse = parse_action;
        else if (target == "/snapshot/disks")
            parse = parse_snapshot_disks;
        else if (target == "/machine-images")
            parse = parse_machine_image;
        else if (target == "/snapshot/create")
            parse = parse_snapshot_create;
        else if (target == "/snapshot/load")
            parse = parse_snapshot_load;
        else if (target == "/agent")
            parse = parse_agent;
        if (parse) {
            STRATA_TRY(json, parse_json(body));
            return parse(json);
        }
        if (target == "/vm/suspend") {
            // No fields; an empty body is allowed too.
            if (!body.empty()) {
                STRATA_TRY(json, parse_json(body));
                STRATA_TRY(reader, ObjectReader::open(json, {}));
                (void)reader;
            }
            return ApiRequest { SuspendRequest {} };
        }
        if (target.starts_with(drives_prefix)) {
            auto const id = target.substr(drives_prefix.size());
            if (id.find('/') != std::string_view::npos || id.empty())
                return invalid_path(method, target);
            STRATA_TRY(check_drive_id(id));
            STRATA_TRY(json, parse_json(body));
            return parse_drive(id, json);
        }
        if (target.starts_with(nets_prefix)) {
            auto const id = target.substr(nets_prefix.size());
            if (id.find('/') != std::string_view::npos || id.empty())
                return invalid_path(method, target);
            STRATA_TRY(check_drive_id(id));
            STRATA_TRY(json, parse_json(body));
            return parse_network_interface(id, json);
        }
    }
    if (method == "PATCH" && target.starts_with(nets_prefix)) {
        auto const id = target.substr(nets_prefix.size());
        if (id.find('/') != std::string_view::npos || id.empty())
            return invalid_path(method, target);
        STRATA_TRY(check_drive_id(id));
        STRATA_TRY(json, parse_json(body));
        return parse_network_interface_update(id, json);
    }
    if (method == "PATCH" && target == "/vm") {
        STRATA_TRY(json, parse_json(body));
        return parse_vm_state(json);
    }
    if (method == "PATCH" && target.starts_with(drives_prefix)) {
        auto const id = target.substr(drives_prefix.size());
        if (id.find('/') != std::string_view::npos || id.empty())
            return invalid_path(method, target);
        STRATA_TRY(check_drive_id(id));
        STRATA_TRY(json, parse_json(body));
        return parse_drive_update(id, json);
    }
    return invalid_path(method, target);
}

Phase phase_of(ApiRequest const& request)
{
    if (std::holds_alternative<BootSource>(request) || std::holds_alternative<MachineSettings>(request)
        || std::holds_alternative<DriveConfig>(request) || std::holds_alternative<NetworkInterfaceConfig>(request)
        || std::holds_alternative<MmdsConfigRequest>(request)
        || std::holds_alternative<SnapshotLoadRequest>(request))
        return Phase::PreBoot;
    if (auto const* action = std::get_if<InstanceAction>(&request))
        return action->type == ActionType::InstanceStart ? Phase::PreBoot : Phase::PostBoot;
    if (std::holds_alternative<VmStateChange>(request) || std::holds_alternative<SnapshotDisksRequest>(request)
        || std::holds_alternative<MachineImageRequest>(request) || std::holds_alternative<AgentCommand>(request)
        || std::holds_alternative<SuspendRequest>(request) || std::holds_alternative<SnapshotCreateRequest>(request))
        return Phase::PostBoot;
    return Phase::Any;
}

Status check_name(std::string_view what, std::string_view name)
{
    std::string const field(what);
    if (name.empty())
        return usage("`" + field + "` is empty.");
    if (name.size() > max_name_bytes)
        return usage("`" + field + "` is longer than " + std::to_string(max_name_bytes) + " bytes.");
    if (name.find('/') != std::string_view::npos)
        return usage("`" + field + "` contains '/'.");
    if (name == "." || name.find("..") != std::string_view::npos)
        return usage("`" + field + "` is '.' or contains '..'.");
    if (has_control_character(name))
        return usage("`" + field + "` contains a control character.");
    return ok();
}

Status check_drive_id(std::string_view id)
{
    auto const allowed = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    };
    bool good = !id.empty() && id.size() <= max_name_bytes && id != "." && id != "..";
    for (char c : id)
        good = good && allowed(c);
    if (!good)
        return usage("API Resource IDs can only contain alphanumeric characters, underscores, '-' and '.' (at most "
            + std::to_string(max_name_bytes) + ").");
    return ok();
}

Status check_label(std::string_view key, std::string_view value)
{
    auto const allowed = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; };
    constexpr std::size_t limit = 63;
    bool good_key = !key.empty() && key.size() <= limit && key[0] >= 'a' && key[0] <= 'z';
    for (char c : key)
        good_key = good_key && allowed(c);
    if (!good_key)
        return usage("Label key '" + quote_for_message(key) + "' must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter.");
    bool good_value = value.size() <= limit;
    for (char c : value)
        good_value = good_value && allowed(c);
    if (!good_value)
        return usage("Label value '" + quote_for_message(value) + "' must be at most 63 characters of a-z, 0-9, '_' or '-'.");
    return ok();
}

} // namespace strata::api
