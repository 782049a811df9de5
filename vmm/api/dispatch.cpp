// Request handling without the transport; see dispatch.h.
#include "vmm/api/dispatch.h"

#include "base/ipv4.h"
#include "vmm/api/request.h"

#include <nlohmann/json.hpp>

namespace strata::api {

namespace {

using nlohmann::json;

// Replacing invalid UTF-8 (a client's bytes echoed in a message) keeps dump()
// from throwing.
std::string dump(json const& value)
{
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

HttpReply json_reply(json const& value)
{
    return HttpReply { 200, dump(value) };
}

HttpReply error_reply(Error const& error)
{
    return fault_reply(status_for(error.kind), error.message);
}

char const* cpu_template_name(CpuTemplate t)
{
    return t == CpuTemplate::Minimal ? "minimal" : "host";
}

// The configuration in the same shape the PUTs take, so that a client can replay it.
json boot_source_json(BootSource const& source)
{
    json out = json::object();
    if (!source.kernel_image_path.empty())
        out["kernel_image_path"] = source.kernel_image_path;
    if (!source.firmware_path.empty())
        out["firmware_path"] = source.firmware_path;
    if (!source.initrd_path.empty())
        out["initrd_path"] = source.initrd_path;
    if (!source.boot_args.empty())
        out["boot_args"] = source.boot_args;
    return out;
}

json drive_json(DriveConfig const& drive)
{
    json out = { { "drive_id", drive.drive_id }, { "is_root_device", drive.is_root_device }, { "is_read_only", drive.is_read_only },
        { "cache_type", drive.cache_type == CacheType::Writeback ? "Writeback" : "Unsafe" }, { "scratch", drive.scratch } };
    if (!drive.path_on_host.empty())
        out["path_on_host"] = drive.path_on_host;
    if (!drive.disk_name.empty())
        out["disk_name"] = drive.disk_name;
    if (!drive.rate_limiter.unlimited()) {
        auto bucket = [](TokenBucketConfig const& b) {
            return json { { "size", b.size }, { "one_time_burst", b.one_time_burst }, { "refill_time", b.refill_time_ms } };
        };
        json limiter = json::object();
        if (drive.rate_limiter.bandwidth.size != 0)
            limiter["bandwidth"] = bucket(drive.rate_limiter.bandwidth);
        if (drive.rate_limiter.ops.size != 0)
            limiter["ops"] = bucket(drive.rate_limiter.ops);
        out["rate_limiter"] = limiter;
    }
    if (!drive.rate_limit_group.empty())
        out["rate_limit_group"] = drive.rate_limit_group;
    return out;
}

json vm_config_json(VmConfigView const& config)
{
    json out = json::object();
    if (config.boot_source)
        out["boot-source"] = boot_source_json(*config.boot_source);
    auto const& m = config.machine_config;
    out["machine-config"] = { { "vcpu_count", m.vcpu_count }, { "mem_size_mib", m.mem_size_mib }, { "smt", m.smt },
        { "cpu_template", cpu_template_name(m.cpu_template) }, { "track_dirty_pages", m.track_dirty_pages } };
    out["drives"] = json::array();
    for (auto const& drive : config.drives)
        out["drives"].push_back(drive_json(drive));
    out["network-interfaces"] = json::array();
    // Limiters as PUT /network-interfaces takes them, so an entry replays; a
    // direction without a limit has no key.
    auto net_limiter = [](RateLimiterConfig const& l) {
        json limiter = json::object();
        for (auto [name, b] : { std::pair { "bandwidth", l.bandwidth }, std::pair { "ops", l.ops } })
            if (b.size != 0)
                limiter[name] = json { { "size", b.size }, { "one_time_burst", b.one_time_burst }, { "refill_time", b.refill_time_ms } };
        return limiter;
    };
    for (auto const& net : config.network_interfaces) {
        json one { { "iface_id", net.iface_id }, { "host_dev_name", net.host_dev_name }, { "guest_mac", net.guest_mac } };
        if (!net.rx_rate_limiter.unlimited())
            one["rx_rate_limiter"] = net_limiter(net.rx_rate_limiter);
        if (!net.tx_rate_limiter.unlimited())
            one["tx_rate_limiter"] = net_limiter(net.tx_rate_limiter);
        out["network-interfaces"].push_back(one);
    }
    if (auto const& mmds = config.mmds_config)
        out["mmds-config"] = { { "network_interfaces", mmds->network_interfaces }, { "version", mmds->v2 ? "V2" : "V1" },
            { "ipv4_address", format_ipv4(mmds->ipv4) } };
    return out;
}

json metrics_json(VmMetrics const& metrics)
{
    json disks = json::array();
    for (auto const& d : metrics.disks) {
        disks.push_back({ { "drive_id", d.drive_id }, { "requests", d.requests }, { "read_requests", d.read_requests },
            { "write_requests", d.write_requests }, { "flush_requests", d.flush_requests }, { "discard_requests", d.discard_requests },
            { "write_zeroes_requests", d.write_zeroes_requests }, { "bytes_read", d.bytes_read }, { "bytes_written", d.bytes_written },
            { "errors", d.errors }, { "rejected", d.rejected }, { "backpressure", d.backpressure }, { "throttled", d.throttled } });
        if (auto const& l = d.lazy)
            disks.back()["lazy"] = { { "chunks_present", l->chunks_present }, { "chunks_total", l->chunks_total },
                { "bytes_present", l->bytes_present }, { "bytes_total", l->bytes_total }, { "demand_fetches", l->demand_fetches },
                { "demand_bytes", l->demand_bytes }, { "fill_fetches", l->fill_fetches }, { "fill_bytes", l->fill_bytes },
                { "failed_fetches", l->failed_fetches }, { "held_requests", l->held_requests }, { "eio_requests", l->eio_requests } };
    }
    json out = { { "disks", disks } };
    out["last_capture_stall_us"] = metrics.last_capture_stall_us ? json(*metrics.last_capture_stall_us) : json(nullptr);
    out["boot_complete_us"] = metrics.boot_complete_us ? json(*metrics.boot_complete_us) : json(nullptr);
    out["restore_us"] = metrics.restore_us ? json(*metrics.restore_us) : json(nullptr);
    if (!metrics.nets.empty()) {
        json nets = json::array();
        for (auto const& n : metrics.nets)
            nets.push_back({ { "iface_id", n.iface_id }, { "rx_packets", n.rx_packets }, { "rx_bytes", n.rx_bytes },
                { "tx_packets", n.tx_packets }, { "tx_bytes", n.tx_bytes }, { "rx_dropped", n.rx_dropped }, { "tx_dropped", n.tx_dropped },
                { "errors", n.errors }, { "tx_backpressure", n.tx_backpressure }, { "rx_throttled", n.rx_throttled },
                { "tx_throttled", n.tx_throttled }, { "mmds_rx_frames", n.mmds_rx_frames }, { "mmds_tx_frames", n.mmds_tx_frames },
                { "mmds_dropped", n.mmds_dropped }, { "rx_direct", n.rx_direct } });
        out["nets"] = nets;
    }
    if (auto const& c = metrics.console)
        out["console"] = { { "bytes_to_guest", c->bytes_to_guest }, { "bytes_from_guest", c->bytes_from_guest }, { "errors", c->errors },
            { "refused_bytes", c->refused_bytes }, { "discarded_bytes", c->discarded_bytes } };
    return out;
}

HttpReply status_reply(Status const& status)
{
    if (!status)
        return error_reply(status.error());
    return HttpReply { 204, {} };
}

HttpReply capture_reply(Result<CaptureResult> const& result)
{
    if (!result)
        return error_reply(result.error());
    json out = { { "name", result.value().name }, { "stall_us", result.value().stall_us } };
    if (!result.value().guest_flush.empty())
        out["guest_flush"] = result.value().guest_flush;
    return json_reply(out);
}

HttpReply agent_reply(AgentCommand const& command, Result<AgentAnswer> const& result)
{
    if (!result)
        return error_reply(result.error());
    if (!result.value().ok)
        return fault_reply(400, "The guest agent refused `" + command.cmd + "`: " + result.value().error);
    // The agent's line is JSON already; parse it to re-serialize safely (a guest
    // may put anything in it), falling back to quoting it as a string.
    auto line = json::parse(result.value().reply_json, nullptr, false);
    if (line.is_discarded())
        line = json { { "reply", result.value().reply_json } };
    return json_reply(line);
}

// Calls the one controller method the request asks for.
struct Executor {
    VmController& controller;

    HttpReply operator()(GetInstanceInfo const&) const
    {
        auto info = controller.instance_info();
        if (!info)
            return error_reply(info.error());
        return json_reply({ { "id", info.value().id }, { "state", vm_state_name(info.value().state) },
            { "vmm_version", info.value().vmm_version }, { "app_name", "strata" } });
    }
    HttpReply operator()(GetVmConfig const&) const
    {
        auto config = controller.vm_config();
        if (!config)
            return error_reply(config.error());
        return json_reply(vm_config_json(config.value()));
    }
    HttpReply operator()(GetMetrics const&) const
    {
        auto metrics = controller.metrics();
        if (!metrics)
            return error_reply(metrics.error());
        return json_reply(metrics_json(metrics.value()));
    }
    HttpReply operator()(BootSource const& r) const { return status_reply(controller.set_boot_source(r)); }
    HttpReply operator()(MachineSettings const& r) const { return status_reply(controller.set_machine_config(r)); }
    HttpReply operator()(DriveConfig const& r) const { return status_reply(controller.put_drive(r)); }
    HttpReply operator()(DriveUpdate const& r) const { return status_reply(controller.update_drive(r)); }
    HttpReply operator()(NetworkInterfaceConfig const& r) const { return status_reply(controller.put_network_interface(r)); }
    HttpReply operator()(NetworkInterfaceUpdate const& r) const { return status_reply(controller.update_network_interface(r)); }
    HttpReply operator()(InstanceAction const& r) const
    {
        if (r.type == ActionType::InstanceStart)
            return status_reply(controller.start_instance());
        return status_reply(controller.send_ctrl_alt_del());
    }
    HttpReply operator()(VmStateChange const& r) const { return status_reply(r.pause ? controller.pause() : controller.resume()); }
    HttpReply operator()(SnapshotDisksRequest const& r) const { return capture_reply(controller.snapshot_disks(r)); }
    HttpReply operator()(MachineImageRequest const& r) const { return capture_reply(controller.create_machine_image(r)); }
    HttpReply operator()(AgentCommand const& r) const { return agent_reply(r, controller.agent_command(r)); }
    HttpReply operator()(SuspendRequest const&) const { return status_reply(controller.suspend()); }
    HttpReply operator()(MmdsPut const& r) const { return status_reply(controller.put_mmds(r)); }
    HttpReply operator()(MmdsPatch const& r) const { return status_reply(controller.patch_mmds(r)); }
    HttpReply operator()(MmdsConfigRequest const& r) const { return status_reply(controller.set_mmds_config(r)); }
    HttpReply operator()(MmdsGet const&) const
    {
        auto data = controller.get_mmds();
        if (!data)
            return error_reply(data.error());
        return HttpReply { 200, data.value() };
    }
    HttpReply operator()(SnapshotCreateRequest const& r) const { return status_reply(controller.create_snapshot(r)); }
    HttpReply operator()(SnapshotLoadRequest const& r) const { return status_reply(controller.load_snapshot(r)); }
};

} // namespace

unsigned status_for(ErrorKind kind)
{
    switch (kind) {
    case ErrorKind::Usage:
    case ErrorKind::BadInput:
    case ErrorKind::Unsupported: return 400;
    case ErrorKind::NotFound: return 404;
    case ErrorKind::Exists:
    case ErrorKind::Busy: return 409;
    case ErrorKind::Timeout: return 504;
    default: return 500;
    }
}

std::string fault_body(std::string_view message)
{
    return dump(json { { "fault_message", std::string(message) } });
}

HttpReply fault_reply(unsigned status, std::string_view message)
{
    return HttpReply { status, fault_body(message) };
}

char const* vm_state_name(VmState state)
{
    switch (state) {
    case VmState::NotStarted: return "Not started";
    case VmState::Running: return "Running";
    case VmState::Paused: return "Paused";
    }
    return "Not started";
}

HttpReply handle_request(VmController& controller, std::string_view method, std::string_view target, std::string_view body)
{
    auto request = parse_request(method, target, body);
    if (!request)
        return error_reply(request.error());

    auto const phase = phase_of(request.value());
    if (phase != Phase::Any) {
        auto info = controller.instance_info();
        if (!info)
            return error_reply(info.error());
        bool const started = info.value().state != VmState::NotStarted;
        if (phase == Phase::PreBoot && started)
            return fault_reply(400, not_supported_after_start);
        if (phase == Phase::PostBoot && !started)
            return fault_reply(400, not_supported_before_start);
    }
    return std::visit(Executor { controller }, request.value());
}

} // namespace strata::api
