// `strata vmm`: one VM's VMM process, serving the REST API on a Unix socket.
//   strata vmm --vm NAME          a VM from the store; what `strata vms start`
//                                 spawns (detached). Its runtime folder (API socket,
//                                 console socket, serial log, pid) is
//                                 runtime_paths(store, NAME).
//   strata vmm --api-socket PATH  an unconfigured VMM that the API configures and
//                                 starts (Firecracker's way); serial on stdio.
#include "cli/commands.h"

#include "store/record_files.h"
#include "store/store.h"
#include "store/vm_record.h"
#include "cli/run_support.h"
#include "devices/virtio/net/mmds_store.h"
#include "vmm/console_relay.h"
#include "vmm/isolation/jail_vm.h"
#include "vmm/prepared_nets.h"
#include "vmm/prepared_vm.h"
#include "vmm/runtime_dir.h"
#include "vmm/vm_config.h"
#include "vmm/vmm_controller.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <filesystem>
#include <csignal>
#include <fcntl.h>
#include <iostream>
#include <memory>
#include <optional>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata::cli {

namespace {

struct VmmOptions {
    std::string vm;
    std::string api_socket;
    std::string seccomp;
    int lock_fd { -1 };
    bool jail { false };
    std::optional<std::uint32_t> jail_uid, jail_gid;
};

Status mark_generalized(Store& store, std::string const& name)
{
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    STRATA_TRY(vm, load_vm(held, name));
    vm.generalized = true;
    return save_vm(held, vm, false);
}

Status forget_saved_state(Store& store, std::string const& name)
{
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    STRATA_TRY(vm, load_vm(held, name));
    vm.restore_from.clear();
    return save_vm(held, vm, false);
}

struct JailedVmm {
    Jailed jailed; // await_cgroup before guest memory
    // The netns=auto interfaces made before the jail, for the machine.
    std::shared_ptr<PreparedNets> nets;
};

// Starts the jail (vmm/isolation/jail.h) for a stored VM: returns in the jailed
// VMM with the pid its pid file names (its own, on the host). The VM's netns=auto
// namespaces are made and their taps opened first, on the host (ip and iptables
// run from the host's file system, and joining a namespace needs a capability
// the VMM drops); the supervisor deletes them when the VMM ends.
Result<JailedVmm> jail_vm(Store& store, MachineConfig const& config, RuntimePaths const& paths, VmmOptions const& options)
{
    JailedVmm out;
    STRATA_TRY(nets, PreparedNets::create(config.nets));
    out.nets = std::move(nets);
    JailOptions jo;
    if (options.jail_uid)
        jo.uid = static_cast<uid_t>(*options.jail_uid);
    if (options.jail_gid)
        jo.gid = static_cast<gid_t>(*options.jail_gid);
    jo.netns_auto_prepared = true;
    STRATA_TRY(spec, jail_spec_for_vm(store, config, paths, jo));
    STRATA_TRY(mode, seccomp_mode_option(options.seccomp));
    spec.supervisor_seccomp = mode;
    if (!out.nets->empty())
        spec.after_vmm = [nets = out.nets] { nets->delete_namespaces(); };
    pid_t const before = ::getpid();
    auto jailed = enter_jail(spec);
    // In the jailed VMM (which returns here, with or without an error) the
    // namespaces are the supervisor's: it can no longer reach /run/netns.
    if (::getpid() != before || (jailed && jailed.value().supervised))
        out.nets->disown();
    if (!jailed)
        return jailed.error();
    out.jailed = std::move(jailed.value());
    return out;
}

int run_stored_vm(std::string const& name, VmmOptions const& options)
{
    std::string const& seccomp = options.seccomp;
    int const lock_fd = options.lock_fd;
    block_stop_signals();
    use_one_malloc_arena();
    std::signal(SIGPIPE, SIG_IGN);
    // Jailed, the VMM keeps the store's paths but works from /: they must be absolute.
    // The runtime folder stays the one named by the root as given (what `vms` uses).
    std::string const given_root = Store::default_root();
    auto store = Store::open(options.jail ? std::filesystem::absolute(given_root).lexically_normal().string() : given_root);
    if (!store)
        return report(store.error());
    auto vm = load_vm(*store.value(), name);
    if (!vm)
        return report(vm.error());
    auto config = machine_config_for(*store.value(), vm.value());
    if (!config)
        return report(config.error());
    auto paths = runtime_paths(given_root, name);
    if (auto r = make_runtime_dir(paths.dir); !r)
        return report(r.error());
    // The VM's lock, held until this process ends: what tells a live VMM from a
    // stale folder. `vms start` took it and passes it on (--lock-fd).
    Fd lock;
    if (lock_fd >= 0) {
        lock = Fd(lock_fd);
        ::fcntl(lock_fd, F_SETFD, FD_CLOEXEC);
        if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
            return report(make_error(ErrorKind::Busy, "--lock-fd " + std::to_string(lock_fd) + " is not this VM's lock"));
    } else {
        auto taken = take_vmm_lock(paths);
        if (!taken)
            return report(taken.error().context("vm '" + name + "'"));
        lock = std::move(taken.value());
    }
    // The jail forks and unshares: it comes before any thread (seccomp's spawner too).
    pid_t pid_for_file = ::getpid();
    std::shared_ptr<PreparedNets> prepared_nets;
    Jailed jailed;
    jailed.host_pid = pid_for_file;
    if (options.jail) {
        auto made = jail_vm(*store.value(), config.value(), paths, options);
        if (!made)
            return report(made.error());
        jailed = std::move(made.value().jailed);
        prepared_nets = std::move(made.value().nets);
    }
    // The VM itself (KVM, its RAM slots, the interrupt controllers) is made on a
    // thread of its own from here, while the rest of the start goes on: its
    // ioctls mostly wait on the kernel (vmm/prepared_vm.h). After the jail, which
    // forks: the VM belongs to the process that made it. Before seccomp's
    // spawner, which would start the thread only after its own set-up and the
    // thread's filter: the thread builds as the main thread does (unfiltered
    // until the machine is built) and ends before the guest runs.
    auto const preparation = VmPreparation::start(config.value().memory_mib << 20, config.value().track_dirty_pages);
    if (auto filtering = enable_seccomp_option(seccomp); !filtering)
        return report(filtering.error());
    auto relay = ConsoleRelay::start(paths.serial_log, paths.console_socket);
    if (!relay)
        return report(relay.error());

    Store& st = *store.value();
    VmRecord const& record = vm.value();
    // The metadata service starts with the VM's own metadata (PUT /mmds may
    // replace it later); a VM without one still has a store for the API.
    std::shared_ptr<virtio::net::MmdsStore> mmds;
    if (record.spec.mmds.enabled()) {
        mmds = virtio::net::MmdsStore::create(config.value().mmds.v2 ? virtio::net::MmdsVersion::V2 : virtio::net::MmdsVersion::V1);
        if (auto put = mmds->put(mmds_data_for(record)); !put)
            return report(put.error().context("vm '" + name + "': its metadata for the metadata service"));
    }
    MachineIo io { relay.value()->serial_out(), relay.value()->serial_in(), mmds };
    io.prepared = preparation;
    io.prepared_nets = prepared_nets;
    VmmController controller(name, config.value(), io,
        [&st, &record](Machine&, MachineImageCapture const& capture) { return record_vm_capture(st, record, capture); },
        [&st](std::string const& image) { return check_machine_image_name_free(st, image); });
    // The pid file is written once the API answers: its presence with a live pid
    // and an answering socket is what `strata vms` reads as "running".
    // Written to a new file of its own (O_EXCL, O_NOFOLLOW: nothing planted in
    // the folder is followed or reused) and renamed over the pid file, which
    // replaces whatever is there rather than writing through it.
    auto write_pid = [&] {
        std::string pid = std::to_string(pid_for_file) + "\n";
        std::string tmp = paths.pid_file + "." + std::to_string(::getpid());
        ::unlink(tmp.c_str());
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            bool written = ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
            ::close(fd);
            if (!written || ::rename(tmp.c_str(), paths.pid_file.c_str()) != 0)
                ::unlink(tmp.c_str());
        }
    };
    // A guest that acknowledged generalize and then reset or powered off is
    // generalized: record it before this process (and so the VM) is seen to end.
    auto on_exit = [&](MachineExit const& exit) {
        if (!controller.generalized_on_exit(exit))
            return;
        if (auto marked = mark_generalized(st, name); !marked)
            std::cerr << "strata: vm '" << name << "' generalized, but its record was not updated: " << marked.error().message << "\n";
        else
            std::cerr << "strata: vm '" << name << "' is generalized\n";
    };
    if (!record.restore_from.empty()) {
        // Restored, not booted: the saved state is used once. The record forgets
        // it before the guest runs, since the guest's disks move on from then.
        auto const dir = vm_state_dir(st.root(), name);
        controller.restore_on_start({ dir / "state", dir / "memory", [&st, &name, dir]() -> Status {
                                         STRATA_TRY(forget_saved_state(st, name));
                                         std::error_code ec;
                                         std::filesystem::remove_all(dir, ec);
                                         return ok();
                                     },
            record.restore_from, record.restore_from != "suspended" });
    }
    controller.suspend_into({ vm_state_dir(st.root(), name), [&st, &name]() -> Status {
                                 STRATA_TRY(held, RecordLock::take(st.root(), true));
                                 STRATA_TRY(current, load_vm(held, name));
                                 current.restore_from = "suspended";
                                 return save_vm(held, current, false);
                             } });
    // In its cgroup before the machine (and its guest memory) is made.
    if (auto in_cgroup = await_cgroup(jailed); !in_cgroup)
        return report(in_cgroup.error());
    pid_for_file = jailed.host_pid;
    int status = serve_until_exit(controller, paths.api_socket, true, write_pid, on_exit);
    ::unlink(paths.pid_file.c_str());
    return status;
}

int run_api_only(std::string const& given_socket, VmmOptions const& options)
{
    block_stop_signals();
    use_one_malloc_arena();
    std::signal(SIGPIPE, SIG_IGN);
    std::string socket = given_socket;
    if (options.jail) {
        // Jailed, in the socket's folder: what the API names must be put there.
        socket = std::filesystem::absolute(given_socket).lexically_normal().string();
        JailOptions jo;
        if (options.jail_uid)
            jo.uid = static_cast<uid_t>(*options.jail_uid);
        if (options.jail_gid)
            jo.gid = static_cast<gid_t>(*options.jail_gid);
        auto spec = jail_spec_for_api(std::filesystem::path(socket).parent_path().string(), jo);
        auto mode = seccomp_mode_option(options.seccomp);
        if (!mode)
            return report(mode.error());
        spec.supervisor_seccomp = mode.value();
        auto jailed = enter_jail(spec);
        if (!jailed)
            return report(jailed.error());
        // No guest memory before InstanceStart, but nothing gains by waiting
        // later here: the API answers only once the VMM is in its cgroup.
        if (auto in_cgroup = await_cgroup(jailed.value()); !in_cgroup)
            return report(in_cgroup.error());
    }
    if (auto filtering = enable_seccomp_option(options.seccomp); !filtering)
        return report(filtering.error());
    VmmController controller("strata-vmm", MachineConfig {}, MachineIo { STDOUT_FILENO, STDIN_FILENO });
    return serve_until_exit(controller, socket, false);
}

} // namespace

void register_vmm(CLI::App& app, int& exit_code)
{
    auto options = std::make_shared<VmmOptions>();
    auto* vmm = app.add_subcommand("vmm", "Run one VM's VMM process with a REST API (started by `vms start`)");
    auto* source = vmm->add_option_group("VM");
    source->add_option("--vm", options->vm, "A VM in the store");
    source->add_option("--api-socket", options->api_socket, "Serve an unconfigured VMM's API on this socket");
    source->require_option(1);
    vmm->add_option("--lock-fd", options->lock_fd, "An inherited descriptor holding the VM's lock (from `vms start`)")->group("");
    vmm->add_flag("--jail", options->jail, "Run the VMM in a jail (namespaces, a root of its own, cgroup limits, no capabilities): a stored VM's, what `vms start` does unless --no-jail; with --api-socket, the jail holds the socket's folder, where the files the API names must be");
    vmm->add_option("--jail-uid", options->jail_uid, "With --jail: the uid the VMM runs as (root only)");
    vmm->add_option("--jail-gid", options->jail_gid, "With --jail: the gid the VMM runs as (root only)");
    vmm->add_option("--seccomp", options->seccomp, "System call filters per VMM thread: default (a forbidden call ends the VMM), log or off; $STRATA_SECCOMP when not given")->check(CLI::IsMember({ "default", "log", "off" }));
    vmm->callback([options, &exit_code] {
        exit_code = options->vm.empty() ? run_api_only(options->api_socket, *options) : run_stored_vm(options->vm, *options);
    });
}

} // namespace strata::cli
