#include "vmm/vmm_controller.h"

#include "devices/virtio/net/config.h"
#include "devices/virtio/net/device.h"
#include "devices/virtio/net/mmds_store.h"
#include "vmm/isolation/seccomp.h"
#include "vmm/machine_nets.h"
#include "vmm/machine_state.h"

#include "devices/virtio/blk/device.h"
#include "devices/virtio/console/device.h"
#include "store/machine_image.h"
#include "store/manifest.h"
#include "store/store.h"
#include "imaging/open_image.h"
#include "registry/lazy.h"
#include "vmm/agent_channel.h"
#include "vmm/machine_disks.h"
#include "vmm/prepared_vm.h"
#include "vmm/snapshot_file.h"
#include "base/file.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace strata {

namespace {

// A host path from an API request (a drive's path_on_host, a boot file) is the
// client's choice, so whatever is wrong with it is the client's error (Usage,
// 400): a missing file, a directory, one this process may not open (for writing
// too, unless read_only). Without this check the open failed only at
// InstanceStart, as 404 or 500 (Permission and Io are the server's own
// failures), as if strata had failed.
Status check_client_path(std::string const& field, std::string const& path, bool read_only)
{
    auto refuse = [&](std::string const& why, int err) {
        return Error { ErrorKind::Usage, err, "`" + field + "` '" + path + "': " + why };
    };
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return refuse(std::strerror(errno), errno);
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return refuse("not a regular file or block device", 0);
    int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return refuse(std::string(read_only ? "cannot open for reading: " : "cannot open for reading and writing: ") + std::strerror(errno), errno);
    ::close(fd);
    return ok();
}

// Every host path of the configuration, checked as check_client_path does.
Status check_client_paths(MachineConfig const& config)
{
    for (auto const& [field, path] : { std::pair<char const*, std::string const*> { "firmware_path", &config.firmware },
             { "kernel_image_path", &config.kernel }, { "initrd_path", &config.initrd } }) {
        if (!path->empty())
            STRATA_TRY(check_client_path(field, *path, true));
    }
    for (auto const& d : config.disks) {
        if (!d.path.empty())
            STRATA_TRY(check_client_path("path_on_host", d.path, d.read_only));
    }
    return ok();
}

} // namespace

VmmController::VmmController(std::string id, MachineConfig config, MachineIo io, RecordImage record_image, CheckImage check_image)
    : m_id(std::move(id))
    , m_config(std::move(config))
    , m_io(io)
    , m_record_image(std::move(record_image))
    , m_check_image(std::move(check_image))
{
    // Every VMM has a metadata data store (PUT /mmds works before and after
    // boot); the interfaces m_config.mmds names serve it to the guest.
    if (!m_io.mmds)
        m_io.mmds = virtio::net::MmdsStore::create();
    m_io.mmds->set_version(m_config.mmds.v2 ? virtio::net::MmdsVersion::V2 : virtio::net::MmdsVersion::V1);
}

VmmController::~VmmController() = default;

Machine* VmmController::running()
{
    std::lock_guard guard(m_lock);
    return m_started ? m_machine.get() : nullptr;
}

Status VmmController::start()
{
    return create_machine();
}

Status VmmController::start_instance()
{
    // The API's configuration names host files: checked again at start, since
    // one may have gone or changed since its PUT.
    STRATA_TRY(check_client_paths(m_config));
    return create_machine();
}

Status VmmController::create_machine()
{
    {
        std::lock_guard guard(m_lock);
        if (m_started)
            return make_error(ErrorKind::Usage, "the VM is already running");
    }
    std::unique_ptr<Machine> machine;
    if (m_restore) {
        auto const began = std::chrono::steady_clock::now();
        // A folder with memory layers (image_memory.h) restores its chain; one
        // whole memory file otherwise (a suspended VM, an older image).
        STRATA_TRY(layers, memory_layers_of(m_restore->state_file.parent_path()));
        auto restored_or = [&]() -> Result<std::unique_ptr<Machine>> {
            if (!layers)
                return Machine::restore(m_config, m_io, m_restore->state_file, m_restore->memory_file);
            STRATA_TRY(state, read_file(m_restore->state_file.string(), "machine state", max_machine_state_bytes));
            auto from_chain = Machine::restore(m_config, m_io, state, *layers);
            if (!from_chain)
                return from_chain.error().context("state file '" + m_restore->state_file.string() + "'");
            return from_chain;
        }();
        STRATA_TRY(restored, std::move(restored_or));
        std::string generation;
        if (m_restore->new_generation) {
            STRATA_TRY(id, restored->new_generation_id());
            generation = id;
        }
        m_restore_us = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
        if (m_restore->restored)
            STRATA_TRY(m_restore->restored());
        std::fprintf(stderr, "strata: restored from %s in %llu us%s\n", m_restore->what.c_str(), static_cast<unsigned long long>(*m_restore_us),
            prepared_note().c_str());
        if (!generation.empty())
            std::fprintf(stderr, "strata: new VM generation ID %s\n", generation.c_str());
        machine = std::move(restored);
    } else {
        auto const began = std::chrono::steady_clock::now();
        STRATA_TRY(booted, Machine::create(m_config, m_io));
        // The counterpart of the restore's line, for comparing the two.
        std::fprintf(stderr, "strata: machine built in %llu us%s\n", static_cast<unsigned long long>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count()), prepared_note().c_str());
        machine = std::move(booted);
    }
    // Used or not, the preparation is over: a later restore (PUT /snapshot/load)
    // makes its own VM.
    m_io.prepared.reset();
    std::lock_guard guard(m_lock);
    m_machine = std::move(machine);
    m_started = true;
    m_cv.notify_all();
    return ok();
}

std::string VmmController::prepared_note() const
{
    if (!m_io.prepared)
        return {};
    // Its own time is the kernel's waits it kept off the restore (or boot), but
    // for the part counted above as waited.
    return " (VM prepared ahead in " + std::to_string(m_io.prepared->prepare_us()) + " us, " + std::to_string(m_io.prepared->waited_us())
        + " us of it waited for)";
}

std::optional<MachineExit> VmmController::run_until_exit()
{
    Machine* machine = nullptr;
    {
        std::unique_lock guard(m_lock);
        m_cv.wait(guard, [&] { return m_started || m_stop; });
        if (!m_started)
            return std::nullopt;
        machine = m_machine.get();
    }
    return machine->run();
}

void VmmController::request_stop()
{
    std::lock_guard guard(m_lock);
    m_stop = true;
    if (m_machine)
        m_machine->stop();
    m_cv.notify_all();
}

Result<api::InstanceInfo> VmmController::instance_info()
{
    api::InstanceInfo info;
    info.id = m_id;
    info.vmm_version = "0.1.0";
    Machine* m = running();
    info.state = !m ? api::VmState::NotStarted : m->vcpus_paused() ? api::VmState::Paused : api::VmState::Running;
    return info;
}

Result<api::VmConfigView> VmmController::vm_config()
{
    api::VmConfigView view;
    if (!m_config.firmware.empty() || !m_config.kernel.empty()) {
        api::BootSource boot;
        boot.firmware_path = m_config.firmware;
        boot.kernel_image_path = m_config.kernel;
        boot.initrd_path = m_config.initrd;
        boot.boot_args = m_config.cmdline;
        view.boot_source = boot;
    }
    view.machine_config.vcpu_count = m_config.vcpus;
    view.machine_config.mem_size_mib = m_config.memory_mib;
    view.machine_config.cpu_template = m_config.cpu_template;
    view.machine_config.track_dirty_pages = m_config.track_dirty_pages;
    for (auto const& d : m_config.disks) {
        api::DriveConfig drive;
        drive.drive_id = d.id;
        drive.path_on_host = d.path;
        drive.disk_name = d.store_disk;
        drive.is_read_only = d.read_only;
        drive.is_root_device = d.boot;
        drive.cache_type = d.cache == DiskCache::Unsafe ? api::CacheType::Unsafe : api::CacheType::Writeback;
        drive.scratch = d.scratch;
        drive.rate_limiter = d.rate_limit;
        drive.rate_limit_group = d.rate_limit_group;
        view.drives.push_back(drive);
    }
    for (std::size_t i = 0; i < m_config.nets.size(); ++i) {
        auto const& n = m_config.nets[i];
        api::NetworkInterfaceConfig net { n.id, n.tap, n.mac, n.rx_limit, n.tx_limit };
        // A running VM reports the MAC its guest sees (drawn at start when none was given).
        if (Machine* m = running(); m && net.guest_mac.empty() && i < m->nets().count())
            net.guest_mac = m->nets().mac(i);
        view.network_interfaces.push_back(net);
    }
    if (!m_config.mmds.interfaces.empty())
        view.mmds_config = api::MmdsConfigRequest { m_config.mmds.interfaces, m_config.mmds.v2, m_config.mmds.ipv4 };
    return view;
}

Result<api::VmMetrics> VmmController::metrics()
{
    api::VmMetrics out;
    out.last_capture_stall_us = m_last_stall_us;
    out.restore_us = m_restore_us;
    Machine* m = running();
    if (!m)
        return out;
    out.boot_complete_us = m->boot_complete_us();
    auto const c = m->console_metrics();
    out.console = api::ConsoleMetrics { c.bytes_to_guest, c.bytes_from_guest, c.errors, c.refused_bytes, c.discarded_bytes };
    auto& disks = m->disks();
    for (std::size_t i = 0; i < disks.count(); ++i) {
        auto b = disks.device(i).metrics();
        api::DiskMetrics d;
        d.drive_id = disks.config(i).id;
        d.requests = b.requests;
        d.read_requests = b.read_requests;
        d.write_requests = b.write_requests;
        d.flush_requests = b.flush_requests;
        d.discard_requests = b.discard_requests;
        d.write_zeroes_requests = b.write_zeroes_requests;
        d.bytes_read = b.bytes_read;
        d.bytes_written = b.bytes_written;
        d.errors = b.errors;
        d.rejected = b.rejected;
        d.backpressure = b.backpressure;
        d.throttled = b.throttled;
        if (auto l = registry::lazy_disk_state(disks.backend(i))) {
            auto const& p = l->progress;
            auto const& st = l->stats;
            d.lazy = api::DiskMetrics::Lazy { p.chunks_present, p.chunks_total, p.bytes_present, p.bytes_total, st.demand_fetches,
                st.demand_bytes, st.fill_fetches, st.fill_bytes, st.failed_fetches, st.held_requests, st.eio_requests };
        }
        out.disks.push_back(d);
    }
    auto& nets = m->nets();
    for (std::size_t i = 0; i < nets.count(); ++i) {
        auto n = nets.device(i).metrics();
        out.nets.push_back(api::NetInterfaceMetrics { nets.config(i).id, n.rx_packets, n.rx_bytes, n.tx_packets, n.tx_bytes, n.rx_dropped,
            n.tx_dropped, n.errors, n.tx_backpressure, n.rx_throttled, n.tx_throttled, n.mmds_rx_frames, n.mmds_tx_frames,
            n.mmds_dropped, n.rx_direct });
    }
    return out;
}

Status VmmController::set_boot_source(api::BootSource const& source)
{
    STRATA_TRY(check_client_path(source.kernel_image_path.empty() ? "firmware_path" : "kernel_image_path",
        source.kernel_image_path.empty() ? source.firmware_path : source.kernel_image_path, true));
    if (!source.initrd_path.empty())
        STRATA_TRY(check_client_path("initrd_path", source.initrd_path, true));
    m_config.firmware = source.firmware_path;
    m_config.kernel = source.kernel_image_path;
    m_config.initrd = source.initrd_path;
    m_config.cmdline = source.boot_args;
    return ok();
}

Status VmmController::set_machine_config(api::MachineSettings const& settings)
{
    m_config.vcpus = settings.vcpu_count;
    m_config.memory_mib = settings.mem_size_mib;
    m_config.cpu_template = settings.cpu_template;
    m_config.track_dirty_pages = settings.track_dirty_pages;
    return ok();
}

Status VmmController::put_drive(api::DriveConfig const& drive)
{
    DiskConfig d;
    d.id = drive.drive_id;
    d.path = drive.path_on_host;
    d.store_disk = drive.disk_name;
    d.read_only = drive.is_read_only;
    d.boot = drive.is_root_device;
    d.scratch = drive.scratch;
    d.cache = drive.cache_type == api::CacheType::Unsafe ? DiskCache::Unsafe : DiskCache::Writeback;
    d.rate_limit = drive.rate_limiter;
    d.rate_limit_group = drive.rate_limit_group;
    if (!d.path.empty()) {
        STRATA_TRY(check_client_path("path_on_host", d.path, d.read_only));
        // A host file: a strata layer if it says so, raw otherwise.
        d.format = "raw";
        if (auto f = detect_format(d.path); f && f.value() == ImageFormat::Strata)
            d.format = "strata";
    }
    // The drives as they would be, checked whole (ids, one boot disk, each rate
    // limit group's limit) before any of it is kept: a refused PUT changes nothing.
    std::vector<DiskConfig> next = m_config.disks;
    auto same = std::find_if(next.begin(), next.end(), [&](DiskConfig const& e) { return e.id == d.id; });
    if (same != next.end())
        *same = d;
    else
        next.push_back(d);
    // A drive of a group that gives no limit takes the group's (as --disk does).
    STRATA_TRY(share_rate_limit_groups(next));
    STRATA_TRY(check_disks(next));
    m_config.disks = std::move(next);
    return ok();
}

Status VmmController::update_drive(api::DriveUpdate const& update)
{
    // The configuration first, so GET /vm/config and a later restart see it.
    // A disk of a rate limit group shares its limiter with the group's other
    // disks: the new limit is theirs too.
    std::string group;
    bool found = false;
    for (auto const& existing : m_config.disks) {
        if (existing.id == update.drive_id) {
            group = existing.rate_limit_group;
            found = true;
        }
    }
    if (!found)
        return make_error(ErrorKind::NotFound, "no drive '" + update.drive_id + "'");
    for (auto& existing : m_config.disks)
        if (existing.id == update.drive_id || (!group.empty() && existing.rate_limit_group == group))
            existing.rate_limit = update.rate_limiter;
    if (Machine* m = running()) {
        auto& disks = m->disks();
        for (std::size_t i = 0; i < disks.count(); ++i) {
            if (disks.config(i).id == update.drive_id)
                disks.device(i).set_rate_limit(update.rate_limiter);
        }
    }
    return ok();
}

Status VmmController::put_network_interface(api::NetworkInterfaceConfig const& net)
{
    NetConfig n { net.iface_id, net.host_dev_name, net.guest_mac, false, net.rx_rate_limiter, net.tx_rate_limiter };
    STRATA_TRY(check_net(n, "network interface '" + n.id + "'"));
    if (!n.mac.empty())
        n.mac = virtio::net::format_mac(*virtio::net::parse_mac(n.mac));
    std::vector<NetConfig> next = m_config.nets;
    bool replaced = false;
    for (auto& existing : next) {
        if (existing.id == n.id) {
            existing = n;
            replaced = true;
        }
    }
    if (!replaced)
        next.push_back(n);
    STRATA_TRY(check_nets(next));
    m_config.nets = std::move(next);
    return ok();
}

Status VmmController::update_network_interface(api::NetworkInterfaceUpdate const& update)
{
    for (std::size_t i = 0; i < m_config.nets.size(); ++i) {
        auto& n = m_config.nets[i];
        if (n.id != update.iface_id)
            continue;
        RateLimiterConfig const rx = update.rx_rate_limiter.value_or(n.rx_limit);
        RateLimiterConfig const tx = update.tx_rate_limiter.value_or(n.tx_limit);
        if (Machine* m = running(); m && i < m->nets().count())
            m->nets().set_rate_limits(i, rx, tx);
        n.rx_limit = rx;
        n.tx_limit = tx;
        return ok();
    }
    return make_error(ErrorKind::NotFound, "no network interface '" + update.iface_id + "'");
}

Status VmmController::put_mmds(api::MmdsPut const& request) { return m_io.mmds->put(request.json); }
Status VmmController::patch_mmds(api::MmdsPatch const& request) { return m_io.mmds->patch(request.json); }
Result<std::string> VmmController::get_mmds() { return m_io.mmds->get(); }

Status VmmController::set_mmds_config(api::MmdsConfigRequest const& request)
{
    MmdsConfig config { request.network_interfaces, request.v2, request.ipv4 };
    STRATA_TRY(check_mmds(config, m_config.nets));
    m_config.mmds = std::move(config);
    m_io.mmds->set_version(request.v2 ? virtio::net::MmdsVersion::V2 : virtio::net::MmdsVersion::V1);
    return ok();
}

Status VmmController::send_ctrl_alt_del()
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    m->send_ctrl_alt_del();
    return ok();
}

Status VmmController::pause()
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    m->pause_vcpus();
    return ok();
}

Status VmmController::resume()
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    m->resume_vcpus();
    return ok();
}

Result<api::CaptureResult> VmmController::snapshot_disks(api::SnapshotDisksRequest const& request)
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    if (!m->disks().store())
        return make_error(ErrorKind::Unsupported, "the VM has no store disks to snapshot");
    STRATA_TRY(outcome, capture_disks(m->disks(), *m->disks().store(), request.snapshot_name));
    m_last_stall_us = outcome.stall_us;
    return api::CaptureResult { request.snapshot_name, outcome.stall_us };
}

Result<api::CaptureResult> VmmController::create_machine_image(api::MachineImageRequest const& request)
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    if (!m_record_image)
        return make_error(ErrorKind::Unsupported, "machine images need a VM from the store (strata vms start)");
    if (!m->disks().store())
        return make_error(ErrorKind::Unsupported, "the VM has no store disks to capture");
    // The name first: a capture refused after the freeze would have stalled the
    // guest and left every disk a layer deeper for nothing.
    STRATA_TRY(check_object_name(request.name));
    if (m_check_image)
        STRATA_TRY(m_check_image(request.name));
    MachineImageCapture capture;
    capture.request = request;
    if (request.memory) {
        capture.state_dir = machine_state_dir(m->disks().store()->root(), request.name);
        // Made here, not found: two captures (or a capture and an import) under one
        // name must not share the folder, or the loser's clean-up would delete the
        // winner's saved state.
        std::error_code ec;
        std::filesystem::create_directories(capture.state_dir.parent_path(), ec);
        bool const made = !ec && std::filesystem::create_directory(capture.state_dir, ec);
        if (ec)
            return make_error(ErrorKind::Io, "create '" + capture.state_dir.string() + "': " + ec.message());
        if (!made)
            return make_error(ErrorKind::Exists, "a machine image named '" + request.name + "' already has saved memory");
    }
    // A later memory capture of this VM is a differential layer over the last
    // one's chain, linked into the new folder before the cut (so deleting the
    // earlier image meanwhile takes nothing from this one).
    std::vector<MemoryChainLayer> below;
    if (request.memory && m_image_memory && m->tracks_dirty_pages())
        below = link_previous_layers(*m_image_memory, capture.state_dir);
    auto discard_state = [&] {
        if (!capture.state_dir.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(capture.state_dir, ec);
        }
    };
    std::vector<MemoryChainLayer> chain;
    auto do_capture = [&]() -> Status {
        capture.captured_at = utc_now();
        if (!request.memory) {
            STRATA_TRY(outcome, capture_disks(m->disks(), *m->disks().store(), ""));
            m_last_stall_us = outcome.stall_us;
            capture.outcome = std::move(outcome);
            return ok();
        }
        // One cut for everything: capture_disks holds every queue (the requests in
        // flight complete; ones the guest posts from then on wait on the avail
        // rings, where the saved queue positions leave them for the restored
        // device), then the vCPUs are parked and memory and device state saved,
        // before any disk freezes. The vCPUs run again as soon as that is saved.
        // A memory capture takes the dirty log: a later Diff would miss what it
        // took, and so would a later capture over the previous image's chain
        // unless this one succeeds.
        STRATA_TRY(outcome, capture_disks(m->disks(), *m->disks().store(), "", [&]() -> Status {
            m->pause_vcpus();
            // Only here is the dirty log taken: a capture refused before the cut
            // leaves the next Diff and the next memory layer as they were.
            m_memory_chain.clear();
            m_image_memory.reset();
            auto saved = save_image_memory(*m, capture.state_dir, below);
            m->resume_vcpus();
            if (!saved)
                return saved.error();
            chain = std::move(saved.value());
            return ok();
        }));
        m_last_stall_us = outcome.stall_us;
        capture.outcome = std::move(outcome);
        return ok();
    };
    Status captured = request.guest_flush ? capture_with_guest_flush(*m, request.guest_flush_wait_ms, do_capture, capture.guest_flush)
                                          : do_capture();
    if (!captured) {
        discard_state();
        return captured.error();
    }
    if (auto r = m_record_image(*m, capture); !r) {
        discard_state();
        return r.error();
    }
    if (request.memory) {
        std::fprintf(stderr, "strata: machine image '%s': memory layer %s (%s, %llu pages) over %zu layers\n", request.name.c_str(),
            chain.back().id.c_str(), chain.back().diff ? "differential" : "whole",
            static_cast<unsigned long long>(chain.back().diff ? page_count(chain.back().runs) : m->config().memory_mib << 8),
            chain.size() - 1);
        m_image_memory = ImageMemory { capture.state_dir, std::move(chain) };
    }
    return api::CaptureResult { request.name, capture.outcome.stall_us, capture.guest_flush };
}

Status VmmController::suspend()
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    if (!m_suspend)
        return make_error(ErrorKind::Unsupported, "suspend needs a VM from the store (strata vms suspend)");
    if (!m->disks().store())
        return make_error(ErrorKind::Unsupported, "the VM has no store disks; suspend keeps them with its state");
    auto const dir = m_suspend->state_dir;
    auto const fresh = std::filesystem::path(dir.string() + ".new");
    std::error_code ec;
    std::filesystem::remove_all(fresh, ec);
    std::filesystem::create_directories(fresh, ec);
    if (ec)
        return make_error(ErrorKind::Io, "create '" + fresh.string() + "': " + ec.message());
    bool const was_paused = m->vcpus_paused();
    auto undo = [&] {
        std::error_code ignored;
        std::filesystem::remove_all(fresh, ignored);
        if (!was_paused && m->vcpus_paused())
            m->resume_vcpus();
    };
    auto outcome = capture_disks(m->disks(), *m->disks().store(), "", [&]() -> Status {
        m->pause_vcpus();
        m_image_memory.reset(); // the save takes the dirty log
        return m->save_snapshot(fresh / "state", fresh / "memory");
    }, true);
    if (!outcome) {
        undo();
        return outcome.error().context("suspend");
    }
    m_last_stall_us = outcome.value().stall_us;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::rename(fresh, dir, ec);
    Status recorded = ec ? Status(make_error(ErrorKind::Io, "move '" + fresh.string() + "' to '" + dir.string() + "': " + ec.message()))
                         : m_suspend->record_suspended();
    if (!recorded) {
        // The VM runs on: its disks keep the new tops (a layer boundary, as a
        // capture leaves) and no saved state remains.
        std::filesystem::remove_all(dir, ec);
        m->disks().resume_all();
        undo();
        return recorded.error().context("suspend");
    }
    std::fprintf(stderr, "strata: suspended (the guest's queues were held %llu us)\n",
        static_cast<unsigned long long>(outcome.value().stall_us));
    m->stop();
    return ok();
}

namespace {

// A file a snapshot request names: where it goes must not exist yet (nothing
// is overwritten; a Diff's chain may depend on the file) and its folder must.
Status check_new_file(char const* field, std::filesystem::path const& path)
{
    std::error_code ec;
    if (std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found || (ec && ec != std::errc::no_such_file_or_directory))
        return make_error(ErrorKind::Usage, std::string("`") + field + "` '" + path.string() + "' exists; a snapshot never overwrites a file");
    auto const dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
    if (!std::filesystem::is_directory(dir, ec))
        return make_error(ErrorKind::Usage, std::string("`") + field + "` '" + path.string() + "': no such folder");
    return ok();
}

constexpr std::uint64_t max_snapshot_file = 256ull << 20;

} // namespace

Status VmmController::create_snapshot(api::SnapshotCreateRequest const& request)
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    if (!m->vcpus_paused())
        return make_error(ErrorKind::Usage, "the VM must be paused (PATCH /vm {\"state\": \"Paused\"}) before a snapshot is created");
    if (request.diff && !m->tracks_dirty_pages())
        return make_error(ErrorKind::Usage, "a Diff snapshot needs dirty page tracking: `track_dirty_pages` in PUT /machine-config, or `enable_diff_snapshots` on PUT /snapshot/load");
    if (request.diff && m_memory_chain.empty())
        return make_error(ErrorKind::Usage, "a Diff snapshot needs a previous snapshot of this VM to lay its pages over: create a Full one first");
    std::error_code ec;
    auto const snapshot = std::filesystem::absolute(request.snapshot_path, ec);
    auto const memory = std::filesystem::absolute(request.mem_file_path, ec);
    if (ec)
        return make_error(ErrorKind::Usage, "cannot resolve the snapshot's paths: " + ec.message());
    if (snapshot.lexically_normal() == memory.lexically_normal())
        return make_error(ErrorKind::Usage, "`snapshot_path` and `mem_file_path` name the same file");
    STRATA_TRY(check_new_file("snapshot_path", snapshot));
    STRATA_TRY(check_new_file("mem_file_path", memory));

    // The drives: writable ones are copied beside the snapshot file (strata
    // captures disks in the same cut; Firecracker leaves them to the user).
    auto& disks = m->disks();
    SnapshotFile file;
    file.vcpus = m->config().vcpus;
    file.memory_mib = m->config().memory_mib;
    file.cpu_template = m->config().cpu_template;
    file.transport = m->config().transport;
    // The interfaces as configured (netns=auto stays auto: every load makes a
    // namespace of its own), with the MAC the guest uses.
    file.nets = m->config().nets;
    for (std::size_t i = 0; i < file.nets.size() && i < m->nets().count(); ++i)
        file.nets[i].mac = m->nets().mac(i);
    file.mmds = m->config().mmds;
    std::vector<std::filesystem::path> made;
    for (std::size_t i = 0; i < disks.count(); ++i) {
        auto const& d = disks.config(i);
        if (!d.store_disk.empty())
            return make_error(ErrorKind::Unsupported, "drive '" + d.id + "' is a store disk; snapshot a VM from the store with PUT /machine-images and \"memory\": true");
        if (!d.read_only && d.format != "raw")
            return make_error(ErrorKind::Unsupported, "drive '" + d.id + "' is a writable " + d.format + " file; snapshots copy writable raw drives only");
        SnapshotDrive drive { d, {} };
        drive.disk.path = std::filesystem::absolute(d.path, ec).string();
        // The drive's limit as PATCH /drives last set it (the configuration
        // follows it; the machine's copy is the one it started with).
        for (auto const& c : m_config.disks) {
            if (c.id == d.id) {
                drive.disk.rate_limit = c.rate_limit;
                drive.disk.rate_limit_group = c.rate_limit_group;
            }
        }
        if (!d.read_only) {
            drive.capture = snapshot_disk_name(snapshot, d.id);
            STRATA_TRY(check_new_file("snapshot_path", snapshot.parent_path() / drive.capture));
        }
        file.drives.push_back(std::move(drive));
    }

    auto discard = [&] {
        std::error_code ignored;
        for (auto const& p : made)
            std::filesystem::remove(p, ignored);
    };
    // The cut: the vCPUs are parked already; every disk queue is held and its
    // requests in flight complete, so the disks, RAM and the queues' state agree.
    STRATA_TRY(disks.pause_all_within(std::chrono::milliseconds(10000)));
    auto const began = std::chrono::steady_clock::now();
    Status done = [&]() -> Status {
        m->pause_vcpus(); // waits until every vCPU has parked
        for (auto const& drive : file.drives) {
            if (drive.capture.empty())
                continue;
            auto const to = snapshot.parent_path() / drive.capture;
            made.push_back(to);
            STRATA_TRY(copy_disk(drive.disk.path, to));
        }
        made.push_back(memory);
        m_image_memory.reset(); // this save takes the dirty log a machine image's next layer needs
        auto saved = m->save_memory_and_state(memory, request.diff);
        if (!saved) {
            // The dirty log may be gone with the failure: a Diff cannot follow.
            m_memory_chain.clear();
            return saved.error();
        }
        if (request.diff)
            file.memory = m_memory_chain;
        saved.value().memory.path = memory;
        file.memory.push_back(saved.value().memory);
        file.machine_state = std::move(saved.value().state);
        made.push_back(snapshot);
        auto bytes = encode_snapshot_file(file);
        int raw = ::open(snapshot.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (raw < 0) {
            m_memory_chain.clear();
            return errno_error("create snapshot file '" + snapshot.string() + "'");
        }
        Fd out(raw);
        bool const written = ::write(out.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) && ::fsync(out.get()) == 0;
        if (!written) {
            m_memory_chain.clear();
            return errno_error("write snapshot file '" + snapshot.string() + "'");
        }
        return ok();
    }();
    disks.resume_all();
    if (!done) {
        discard();
        return done.error().context("snapshot/create");
    }
    m_memory_chain = file.memory;
    std::fprintf(stderr, "strata: %s snapshot '%s' created in %llu us (%llu memory pages written)\n", request.diff ? "Diff" : "Full",
        snapshot.c_str(),
        static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count()),
        static_cast<unsigned long long>(file.memory.back().diff ? page_count(file.memory.back().runs) : 0));
    return ok();
}

Status VmmController::load_snapshot(api::SnapshotLoadRequest const& request)
{
    {
        std::lock_guard guard(m_lock);
        if (m_started)
            return make_error(ErrorKind::Usage, "the VM is already running");
    }
    if (!m_config.firmware.empty() || !m_config.kernel.empty() || !m_config.disks.empty() || !m_config.nets.empty() || m_restore)
        return make_error(ErrorKind::Usage, "a snapshot is loaded into a VMM with nothing configured (no boot source, drives or network interfaces)");
    STRATA_TRY(check_client_path("snapshot_path", request.snapshot_path, true));
    STRATA_TRY(check_client_path("mem_file_path", request.mem_file_path, true));
    std::error_code ec;
    auto const snapshot = std::filesystem::absolute(request.snapshot_path, ec);
    STRATA_TRY(bytes, read_file(snapshot.string(), "snapshot file", max_snapshot_file));
    auto decoded = decode_snapshot_file(bytes);
    if (!decoded)
        return decoded.error().context("snapshot file '" + snapshot.string() + "'");
    SnapshotFile& file = decoded.value();
    // The top memory file is the request's; the ones below stay where they were made.
    file.memory.back().path = std::filesystem::absolute(request.mem_file_path, ec);
    for (std::size_t i = 0; i + 1 < file.memory.size(); ++i)
        STRATA_TRY(check_client_path("the snapshot's base memory file", file.memory[i].path.string(), true));

    MachineConfig config;
    config.vcpus = file.vcpus;
    config.memory_mib = file.memory_mib;
    config.cpu_template = file.cpu_template;
    config.transport = file.transport;
    config.track_dirty_pages = request.enable_diff_snapshots;
    // Each interface opens the tap the snapshot names, or the one its
    // network_overrides entry names (Firecracker's), or makes a namespace of its
    // own when it was netns=auto.
    config.nets = file.nets;
    for (auto const& o : request.network_overrides) {
        auto it = std::find_if(config.nets.begin(), config.nets.end(), [&](NetConfig const& n) { return n.id == o.iface_id; });
        if (it == config.nets.end())
            return make_error(ErrorKind::Usage, "network_overrides: the snapshot has no network interface '" + o.iface_id + "'");
        it->tap = o.host_dev_name;
        it->netns_auto = false;
    }
    STRATA_TRY(check_nets(config.nets));
    // A netns=auto interface's namespace is made by running ip, which the API
    // thread's seccomp filter does not allow (it would end the VMM): refused
    // with the ways out instead. A VMM started for a stored VM builds its
    // machine before the filters, so `vms start` of such a VM works.
    for (auto const& n : config.nets) {
        if (n.netns_auto && seccomp_mode() == SeccompMode::Kill)
            return make_error(ErrorKind::Unsupported, "network interface '" + n.id + "' of the snapshot is netns=auto, and making its namespace "
                    "runs ip, which this VMM's seccomp filters forbid: name a tap with \"network_overrides\" (a tap in the namespace this VMM "
                    "runs in, as Firecracker's clones use), or start the VMM with --seccomp off");
    }
    config.mmds = file.mmds;
    STRATA_TRY(check_mmds(config.mmds, config.nets));
    for (auto const& drive : file.drives) {
        DiskConfig d = drive.disk;
        if (!drive.capture.empty())
            d.path = (snapshot.parent_path() / drive.capture).string();
        STRATA_TRY(check_client_path("path_on_host", d.path, d.read_only));
        config.disks.push_back(std::move(d));
    }
    STRATA_TRY(check_disks(config.disks));

    auto const began = std::chrono::steady_clock::now();
    auto restored = Machine::restore(config, m_io, file.machine_state, file.memory);
    if (!restored)
        return restored.error().context("snapshot/load");
    auto machine = std::move(restored.value());
    // A loaded VM is a clone of the snapshot (Firecracker's VMGenID too): its
    // guest learns of it from a new generation ID.
    STRATA_TRY(generation, machine->new_generation_id());
    if (!request.resume_vm)
        machine->start_paused();
    m_restore_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
    std::fprintf(stderr, "strata: loaded snapshot '%s' (%zu memory files) in %llu us; new VM generation ID %s\n", snapshot.c_str(),
        file.memory.size(), static_cast<unsigned long long>(*m_restore_us), generation.c_str());
    m_config = config;
    m_io.mmds->set_version(m_config.mmds.v2 ? virtio::net::MmdsVersion::V2 : virtio::net::MmdsVersion::V1);
    m_memory_chain = file.memory;
    std::lock_guard guard(m_lock);
    m_machine = std::move(machine);
    m_started = true;
    m_cv.notify_all();
    return ok();
}

Status VmmController::capture_with_guest_flush(Machine& m, std::uint64_t wait_ms, std::function<Status()> const& capture,
    std::string& flush_state)
{
    auto const wait = std::chrono::milliseconds(wait_ms);
    AgentChannel& agent = m.agent();
    std::string reason;
    bool delivered = false;
    bool thaw = true;
    auto frozen = agent.request("freeze", nlohmann::json { { "timeout_s", FreezeTimeoutS } }, wait, &delivered);
    if (!frozen) {
        reason = frozen.error().message;
        // A freeze the guest never read was withdrawn: there is nothing to thaw.
        thaw = delivered;
    } else if (!frozen.value().ok) {
        // The agent thaws what it froze when a freeze fails part-way.
        reason = "the guest agent could not freeze: " + frozen.value().error;
        thaw = false;
    }
    Status captured = capture();
    if (thaw) {
        auto thawed = agent.request("thaw", nlohmann::json::object(), wait);
        std::string problem;
        if (!thawed) {
            problem = thawed.error().message;
        } else if (!thawed.value().ok) {
            problem = "the guest agent could not thaw: " + thawed.value().error;
        } else {
            auto const& r = thawed.value().result;
            auto a = r.is_object() ? r.find("auto_thawed") : r.end();
            if (r.is_object() && a != r.end() && a->is_boolean() && a->get<bool>())
                problem = "the guest thawed by itself (freeze timeout of " + std::to_string(FreezeTimeoutS) + " s) before the capture ended";
        }
        if (reason.empty() && !problem.empty())
            reason = problem;
        if (!problem.empty())
            std::fprintf(stderr, "strata: guest flush: %s\n", problem.c_str());
    }
    flush_state = reason.empty() ? "quiesced" : "not-quiesced: " + reason;
    return captured;
}

Result<api::AgentAnswer> VmmController::agent_command(api::AgentCommand const& command)
{
    Machine* m = running();
    if (!m)
        return make_error(ErrorKind::Usage, "the VM is not running");
    nlohmann::json args = nlohmann::json::object();
    if (command.timeout_s)
        args["timeout_s"] = *command.timeout_s;
    STRATA_TRY(reply, m->agent().request(command.cmd, args, std::chrono::milliseconds(command.wait_ms)));
    if (command.cmd == "generalize" && reply.ok)
        m_generalize_acknowledged = true;
    return api::AgentAnswer { reply.ok, reply.error, reply.line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) };
}

bool VmmController::generalized_on_exit(MachineExit const& exit) const
{
    return m_generalize_acknowledged.load()
        && (exit.kind == MachineExit::Kind::Reset || exit.kind == MachineExit::Kind::TripleFault
            || exit.kind == MachineExit::Kind::PowerOff);
}

} // namespace strata
