// The jail (jail.h): the supervisor's side (cgroup, signals, reaping) and the
// jailed side (namespaces, the root, ids, capabilities, rlimits).
#include "vmm/isolation/jail.h"

#include "vmm/isolation/clone_into_cgroup.h"
#include "vmm/isolation/landlock.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <linux/capability.h>
#include <sched.h>
#include <sstream>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <dirent.h>
#include <grp.h>
#include <poll.h>
#include <unistd.h>

namespace strata {

namespace {

constexpr int kForwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

void lack(Jailed& jailed, std::string what)
{
    std::cerr << "strata: jail: lacks " << what << "\n";
    jailed.lacks.push_back(std::move(what));
}

bool write_text(std::string const& path, std::string const& text)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok;
}

Status mkdirs(std::string const& path, mode_t mode)
{
    std::string partial;
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        partial = path.substr(0, pos);
        if (partial.empty())
            continue;
        if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST)
            return errno_error("make jail folder " + partial);
    }
    return ok();
}

// --- cgroups -----------------------------------------------------------------

// One cgroup folder per hierarchy the limits go to (v2: one; v1: memory, cpu,
// pids), made under the caller's own cgroup in each, so that a host that put
// strata in a cgroup of its own keeps it inside.
//
// How the VMM gets in decides what the jail costs a start. A move of a whole
// process (its pid written to cgroup.procs) takes the kernel's
// cgroup_threadgroup_rwsem for writing, which first waits for an RCU grace
// period, holding cgroup_mutex meanwhile: 10-12 ms on a v1 host where a start
// without the jail takes 6-7 ms, more in an emulated machine. So no jail
// moves a whole process when it can help it:
//  - v2: the cgroup and its limits are made before the VMM, and the VMM is
//    created in it (clone3 with CLONE_INTO_CGROUP, clone_into_cgroup.h), so
//    nothing is ever moved. Where the kernel refuses that (older than 5.7, no
//    delegation of the folder), the VMM is forked as on v1 and the supervisor
//    moves it in by its pid, grace period and all, while the VMM goes on
//    setting itself up; the VMM waits for that move (await_cgroup) before it
//    touches guest memory. v2 has no cheaper move into a domain cgroup
//    (cgroup.threads moves a thread only within a threaded subtree, which has
//    no memory controller).
//  - v1 (no CLONE_INTO_CGROUP there): a thread that moves itself alone (0
//    written to a hierarchy's `tasks`) skips that lock (the kernel's
//    cgroup_procs_write_start). The supervisor makes the cgroup while the VMM
//    builds its root; the VMM, still one thread, moves itself (and so its
//    whole process) in once the supervisor says the cgroup is there, in some
//    0.1 ms, before it leaves the host's file system (pivot_root).
struct Cgroup {
    std::vector<std::string> dirs;
    bool v2 { false };
};

std::string own_cgroup(std::string const& controller)
{
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        auto first = line.find(':');
        auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos)
            continue;
        std::string list = line.substr(first + 1, second - first - 1);
        std::stringstream names(list);
        std::string name;
        bool match = controller.empty() && list.empty();
        while (!match && std::getline(names, name, ','))
            match = name == controller;
        if (match)
            return line.substr(second + 1);
    }
    return "/";
}

std::string join(std::string const& base, std::string const& rel)
{
    return rel == "/" ? base : base + rel;
}

bool cgroup_v2()
{
    return ::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

constexpr char const* kV1Controllers[] = { "memory", "cpu", "pids" };

// The VM's cgroup folder in a v1 hierarchy, under the caller's own cgroup there.
std::string v1_cgroup_dir(JailSpec const& spec, char const* controller)
{
    return join(std::string("/sys/fs/cgroup/") + controller, own_cgroup(controller)) + "/" + spec.cgroup_name;
}

// Makes the cgroup and sets its limits (v2: before the VMM is created; v1: in
// the supervisor); what fails is a lack, never an error: a VMM without a cgroup
// still runs, and says so.
Cgroup make_cgroup(JailSpec const& spec, Jailed& jailed)
{
    Cgroup cg;
    auto const limit = [](std::uint64_t v) { return v == 0 ? std::string("max") : std::to_string(v); };
    std::uint64_t const period = 100000;
    std::uint64_t const quota = std::uint64_t { spec.cpus } * period;
    // Under contention the scheduler weighs a cgroup as one task of the default
    // weight, however many of its threads are busy; outside the cgroup each busy
    // thread weighs that much. So the VMM's cgroup weighs as many default tasks
    // as the cores it may use (its vCPUs and one for its other threads): a
    // jailed VMM gets the share of the CPU an unjailed one would on a busy host.
    std::uint64_t const cpu_weight_v1 = 1024ull * std::max<std::uint32_t>(1, spec.cpus);
    if (cgroup_v2()) {
        cg.v2 = true;
        std::string const parent = join("/sys/fs/cgroup", own_cgroup(""));
        // Controllers reach a child only through the parent's subtree_control,
        // which a cgroup holding processes (other than the root) refuses in v2.
        for (char const* c : { "+memory", "+cpu", "+pids" })
            write_text(parent + "/cgroup.subtree_control", c);
        std::string const dir = parent + "/" + spec.cgroup_name;
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            lack(jailed, "a cgroup (" + dir + ": " + std::strerror(errno) + ")");
            return cg;
        }
        cg.dirs.push_back(dir);
        if (!write_text(dir + "/memory.max", limit(spec.memory_max)))
            lack(jailed, "a memory limit (" + dir + "/memory.max)");
        if (!write_text(dir + "/cpu.max", (quota ? std::to_string(quota) : std::string("max")) + " " + std::to_string(period)))
            lack(jailed, "a CPU limit (" + dir + "/cpu.max)");
        // The weight as cpu_weight_v1 above (v2 weighs 100 where v1 weighs 1024).
        if (spec.cpus > 1)
            write_text(dir + "/cpu.weight", std::to_string(std::min<std::uint64_t>(10000, 100ull * spec.cpus)));
        if (!write_text(dir + "/pids.max", limit(spec.pids_max)))
            lack(jailed, "a PID limit (" + dir + "/pids.max)");
        return cg;
    }
    struct V1 {
        char const* controller;
        std::vector<std::pair<char const*, std::string>> files;
    };
    V1 const v1[] = {
        { "memory", { { "memory.limit_in_bytes", spec.memory_max ? std::to_string(spec.memory_max) : std::string("-1") } } },
        { "cpu", { { "cpu.cfs_period_us", std::to_string(period) }, { "cpu.cfs_quota_us", quota ? std::to_string(quota) : std::string("-1") },
                     { "cpu.shares", std::to_string(cpu_weight_v1) } } },
        { "pids", { { "pids.max", limit(spec.pids_max) } } },
    };
    for (auto const& h : v1) {
        std::string const root = std::string("/sys/fs/cgroup/") + h.controller;
        if (::access(root.c_str(), F_OK) != 0) {
            lack(jailed, std::string("a ") + h.controller + " cgroup (no cgroup v2 and no v1 " + h.controller + " hierarchy)");
            continue;
        }
        std::string const dir = v1_cgroup_dir(spec, h.controller);
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            lack(jailed, std::string("a ") + h.controller + " cgroup (" + dir + ": " + std::strerror(errno) + ")");
            continue;
        }
        cg.dirs.push_back(dir);
        for (auto const& [file, value] : h.files)
            if (!write_text(dir + "/" + file, value))
                lack(jailed, std::string("a ") + h.controller + " limit (" + dir + "/" + file + ")");
    }
    return cg;
}

// In the supervisor, v2, when the VMM could not be created in its cgroup: moves
// it in by its pid (a grace period's wait, see Cgroup).
void move_into_cgroup(Cgroup const& cg, pid_t pid, Jailed& jailed)
{
    for (auto const& dir : cg.dirs)
        if (!write_text(dir + "/cgroup.procs", std::to_string(pid)))
            lack(jailed, "a cgroup (could not join " + dir + ")");
}

// In the VMM, v1, while it is one thread and still sees the host's
// /sys/fs/cgroup, once the supervisor made the cgroup: moves itself into each
// hierarchy's (see Cgroup). A folder the supervisor could not make is its lack,
// already logged. A `tasks` write moves the calling thread only, so a second
// thread started before the jail would stay outside every limit: that is
// refused, not logged as a lack.
Status move_self_into_cgroup(JailSpec const& spec, Jailed& jailed)
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Threads:", 0) == 0) {
            long const threads = std::stol(line.substr(8));
            if (threads != 1)
                return make_error(ErrorKind::Internal,
                    "jail: the VMM has " + std::to_string(threads) + " threads where it moves itself into its cgroup; only one would move");
        }
    for (char const* controller : kV1Controllers) {
        std::string const tasks = v1_cgroup_dir(spec, controller) + "/tasks";
        int const fd = ::open(tasks.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT)
                lack(jailed, std::string("a ") + controller + " cgroup (could not open " + tasks + ": " + std::strerror(errno) + ")");
            continue;
        }
        if (::write(fd, "0", 1) != 1)
            lack(jailed, std::string("a ") + controller + " cgroup (could not join " + tasks + ": " + std::strerror(errno) + ")");
        ::close(fd);
    }
    return ok();
}

// --- the shared network namespace ---------------------------------------------

// Jailed VMMs that use no network share one empty network namespace (root
// only): made once and kept by a bind mount at kSharedNetns, so that a start
// joins it (setns) rather than making one. A new network namespace costs its
// creation on the start's path and its teardown later in a kernel worker
// (cleanup_net), both milliseconds on some kernels. What the VMMs in it share
// is a loopback that is down and no other interface; they hold no capability to
// change it. Abstract Unix sockets are per network namespace, so two VMMs there
// could reach each other through one (as they could through the store folder
// both hold writable); Landlock ABI 6 scopes those sockets to each VMM.
constexpr char const* kSharedNetnsDir = "/run/strata";
constexpr char const* kSharedNetns = "/run/strata/netns-none";

bool is_namespace(int fd)
{
    struct statfs fs {};
    return ::fstatfs(fd, &fs) == 0 && static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC;
}

// The shared namespace's descriptor, made if need be; -1 when it cannot be had
// (the caller makes a namespace of the VMM's own, as before).
int shared_netns()
{
    int fd = ::open(kSharedNetns, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && is_namespace(fd))
        return fd;
    if (fd >= 0)
        ::close(fd);
    if (!mkdirs(kSharedNetnsDir, 0755))
        return -1;
    // The mount point: a file of root's (a plain file left by a make that failed
    // is used again).
    int point = ::open(kSharedNetns, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (point < 0)
        return -1;
    ::close(point);
    // A child makes the namespace and binds it onto the file; it stays in the
    // host's mount namespace, so the mount is the host's and outlives it. Two
    // starts making it at once stack two mounts: harmless, both are empty.
    pid_t const maker = ::fork();
    if (maker < 0)
        return -1;
    if (maker == 0) {
        if (::unshare(CLONE_NEWNET) != 0)
            ::_exit(1);
        ::_exit(::mount("/proc/self/ns/net", kSharedNetns, nullptr, MS_BIND, nullptr) == 0 ? 0 : 1);
    }
    int status = 0;
    while (::waitpid(maker, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    fd = ::open(kSharedNetns, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && !is_namespace(fd)) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// --- the supervisor --------------------------------------------------------

[[noreturn]] void supervise(pid_t child, Cgroup const& cg, sigset_t const& forwarded, JailSpec const& spec)
{
    // From here the supervisor only waits, forwards and cleans up: filtered to
    // that. One that cannot be filtered takes its VMM down rather than run
    // unfiltered (and still cleans up after it).
    if (auto filtered = apply_supervisor_seccomp(spec.supervisor_seccomp, child); !filtered) {
        std::string const message = "strata: jail: " + filtered.error().message + "; ending the VMM\n";
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, message.data(), message.size());
        ::kill(child, SIGKILL);
    }
    int status = 0;
    for (;;) {
        siginfo_t info {};
        int sig = ::sigwaitinfo(&forwarded, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            ::kill(child, sig);
            continue;
        }
        pid_t done = ::waitpid(child, &status, WNOHANG);
        if (done == child)
            break;
    }
    if (spec.after_vmm)
        spec.after_vmm();
    // The cgroup goes once empty; a cgroup folder is removed with rmdir alone.
    for (auto const& dir : cg.dirs)
        ::rmdir(dir.c_str());
    // The runtime folder is the caller's again (see enter_jail).
    if (spec.lend_runtime_dir && (spec.uid || spec.gid))
        give_back_runtime_dir(spec.runtime_dir);
    if (WIFSIGNALED(status)) {
        // The same end as the VMM's, for whoever waits on the supervisor.
        ::signal(WTERMSIG(status), SIG_DFL);
        ::sigprocmask(SIG_UNBLOCK, &forwarded, nullptr);
        ::prctl(PR_SET_DUMPABLE, 0);
        ::kill(::getpid(), WTERMSIG(status));
        ::_exit(128 + WTERMSIG(status));
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// --- the jailed side -------------------------------------------------------

// Mount flags that a bind mount's remount must keep (in a user namespace a
// locked flag cannot be cleared).
unsigned long kept_flags(std::string const& path)
{
    struct statvfs s {};
    if (::statvfs(path.c_str(), &s) != 0)
        return 0;
    unsigned long flags = 0;
    if (s.f_flag & ST_NOEXEC)
        flags |= MS_NOEXEC;
    if (s.f_flag & ST_NODEV)
        flags |= MS_NODEV;
    if (s.f_flag & ST_RDONLY)
        flags |= MS_RDONLY;
    return flags;
}

Status bind_into(std::string const& root, JailBind const& bind, bool make_nodes, JailSpec const& spec)
{
    struct stat st {};
    if (::stat(bind.path.c_str(), &st) != 0) {
        if (bind.optional && errno == ENOENT)
            return ok();
        return errno_error("jail: find " + bind.path);
    }
    std::string const target = root + bind.path;
    bool const device = S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode);
    if (S_ISDIR(st.st_mode)) {
        STRATA_TRY(mkdirs(target, 0755));
    } else {
        STRATA_TRY(mkdirs(target.substr(0, target.rfind('/')), 0755));
        if (device && make_nodes) {
            // A node of the jail's own (Firecracker's way): owned by the jailed
            // uid, mode 0600, without touching the host's node.
            if (::mknod(target.c_str(), (st.st_mode & S_IFMT) | 0600, st.st_rdev) != 0)
                return errno_error("jail: make device " + target);
            if (::chown(target.c_str(), spec.uid.value_or(::getuid()), spec.gid.value_or(::getgid())) != 0)
                return errno_error("jail: own device " + target);
            return ok();
        }
        int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return errno_error("jail: make mount point " + target);
        ::close(fd);
    }
    if (::mount(bind.path.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0)
        return errno_error("jail: bind " + bind.path);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | kept_flags(bind.path);
    if (!bind.writable)
        flags |= MS_RDONLY;
    if (!device)
        flags |= MS_NODEV;
    if (::mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0)
        return errno_error("jail: remount " + bind.path);
    return ok();
}

// The jail's root, up to leaving the host's file system: its tmpfs and the
// bind mounts in it (enter_root goes in).
Status build_root(JailSpec const& spec, bool make_nodes)
{
    if (::mount(nullptr, "/", nullptr, MS_PRIVATE | MS_REC, nullptr) != 0)
        return errno_error("jail: make mounts private");
    std::string const root = spec.runtime_dir + "/root";
    if (::mkdir(root.c_str(), 0755) != 0 && errno != EEXIST)
        return errno_error("jail: make " + root);
    // A tmpfs of the mount namespace's own: it goes with the namespace, and the
    // mount points made in it never reach the host's runtime folder.
    if (::mount("strata-jail", root.c_str(), "tmpfs", MS_NOSUID, "mode=0755,size=1m,nr_inodes=4096") != 0)
        return errno_error("jail: mount the root");
    for (auto const& bind : spec.binds)
        STRATA_TRY(bind_into(root, bind, make_nodes, spec));
    return ok();
}

// pivot_root into the root build_root made, the host's tree unmounted.
Status enter_root(JailSpec const& spec)
{
    std::string const root = spec.runtime_dir + "/root";
    std::string const old = root + "/.old";
    if (::mkdir(old.c_str(), 0700) != 0)
        return errno_error("jail: make " + old);
    if (::syscall(SYS_pivot_root, root.c_str(), old.c_str()) != 0)
        return errno_error("jail: pivot_root");
    if (::chdir("/") != 0)
        return errno_error("jail: chdir /");
    if (::umount2("/.old", MNT_DETACH) != 0)
        return errno_error("jail: detach the old root");
    ::rmdir("/.old");
    if (::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, nullptr) != 0)
        return errno_error("jail: make the root read-only");
    return ok();
}

Status set_limits(JailSpec const& spec)
{
    rlimit files { spec.open_files, spec.open_files };
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0)
        return errno_error("jail: RLIMIT_NOFILE");
    if (spec.file_size != 0) {
        rlimit size { spec.file_size, spec.file_size };
        if (::setrlimit(RLIMIT_FSIZE, &size) != 0)
            return errno_error("jail: RLIMIT_FSIZE");
    }
    return ok();
}

Status drop_privileges(JailSpec const& spec, bool may_change_ids, bool supervised, Jailed& jailed)
{
    if (spec.uid || spec.gid) {
        if (!may_change_ids) {
            lack(jailed, "another uid/gid (changing ids needs root)");
        } else {
            if (!spec.keep_capabilities.empty() && ::prctl(PR_SET_KEEPCAPS, 1) != 0)
                return errno_error("jail: PR_SET_KEEPCAPS");
            gid_t const gid = spec.gid.value_or(::getgid());
            if (::setgroups(0, nullptr) != 0)
                return errno_error("jail: setgroups");
            if (::setresgid(gid, gid, gid) != 0)
                return errno_error("jail: setresgid");
            uid_t const uid = spec.uid.value_or(::getuid());
            if (::setresuid(uid, uid, uid) != 0)
                return errno_error("jail: setresuid");
        }
    }
    std::uint64_t keep = 0;
    for (int cap : spec.keep_capabilities)
        keep |= std::uint64_t { 1 } << cap;
    // The bounding set first (it needs CAP_SETPCAP, which goes last).
    for (int cap = 0; cap <= 63; ++cap) {
        if ((keep >> cap) & 1)
            continue;
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL)
            break; // past the kernel's last capability
    }
    ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct header { _LINUX_CAPABILITY_VERSION_3, 0 };
    __user_cap_data_struct data[2] {};
    for (int i = 0; i < 2; ++i) {
        auto const word = static_cast<std::uint32_t>(keep >> (32 * i));
        data[i].effective = word;
        data[i].permitted = word;
        data[i].inheritable = 0;
    }
    if (::syscall(SYS_capset, &header, data) != 0)
        return errno_error("jail: capset");
    // A change of ids clears the parent-death signal: set it again, so that a
    // SIGKILLed supervisor still takes the VMM with it. Only under a supervisor:
    // a jail without namespaces has none, and its parent (`vms start`) exits
    // once the VMM answers.
    if (supervised && ::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return errno_error("jail: PR_SET_PDEATHSIG");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return errno_error("jail: PR_SET_NO_NEW_PRIVS");
    return ok();
}

// Landlock over the bound paths (each at its own path, in the jail's root or, for
// a jail without a root of its own, on the host). Needs PR_SET_NO_NEW_PRIVS,
// which drop_privileges sets again later.
Status apply_landlock(JailSpec const& spec, Jailed& jailed)
{
    if (!spec.landlock)
        return ok();
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return errno_error("jail: PR_SET_NO_NEW_PRIVS");
    std::vector<LandlockPath> paths;
    for (auto const& bind : spec.binds)
        if (bind.landlock)
            paths.push_back({ bind.path, bind.writable });
    STRATA_TRY(result, landlock_restrict_to(paths));
    if (result.abi == 0)
        lack(jailed, "Landlock (" + result.why_not + ")");
    else
        std::cerr << "strata: jail: Landlock ABI " << result.abi << ": the VMM may open only its jail's " << paths.size() << " paths\n";
    return ok();
}

// A user namespace mapping only the caller's own ids: what lets a user who is
// not root make the mount and PID namespaces. Must run single-threaded.
bool enter_user_namespace()
{
    uid_t const uid = ::geteuid();
    gid_t const gid = ::getegid();
#ifdef STRATA_TEST_HOOKS
    // A host where user namespaces are off (kvm_jail_test).
    if (char const* off = std::getenv("STRATA_TEST_JAIL_NO_USERNS"); off != nullptr && *off) {
        errno = EPERM;
        return false;
    }
#endif
    if (::unshare(CLONE_NEWUSER) != 0)
        return false;
    write_text("/proc/self/setgroups", "deny");
    return write_text("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1")
        && write_text("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1");
}

} // namespace

Status lend_runtime_dir(std::string const& dir, uid_t uid, gid_t gid)
{
    // The folder's files too: the serial log of an earlier run is reopened.
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            std::string const name = e->d_name;
            if (name != "." && name != ".." && ::fchownat(::dirfd(d), name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
                int const err = errno;
                ::closedir(d);
                return Error { ErrorKind::Io, err, "jail: give " + dir + "/" + name + " to uid " + std::to_string(uid) + ": " + std::strerror(err) };
            }
        }
        ::closedir(d);
    }
    if (::lchown(dir.c_str(), uid, gid) != 0)
        return errno_error("jail: give " + dir + " to uid " + std::to_string(uid));
    return ok();
}

void give_back_runtime_dir(std::string const& dir)
{
    (void)lend_runtime_dir(dir, ::getuid(), ::getgid());
}

namespace {

// Reads the supervisor's go-ahead (the VMM's host pid) from `jailed.cgroup_pending`
// and closes it; ends the VMM when the supervisor is gone.
void read_go_ahead(Jailed& jailed)
{
    pid_t host_pid = 0;
    ssize_t n = 0;
    while ((n = ::read(jailed.cgroup_pending, &host_pid, sizeof host_pid)) < 0 && errno == EINTR) {
    }
    // The supervisor keeps its end open while it lives. One that died before
    // the VMM set PR_SET_PDEATHSIG (a busy host may run the supervisor well
    // ahead) sent no signal: its end is closed now, and the VMM must not run
    // unsupervised.
    pollfd alive { jailed.cgroup_pending, POLLIN, 0 };
    bool const gone = n != static_cast<ssize_t>(sizeof host_pid) || (::poll(&alive, 1, 0) == 1 && (alive.revents & POLLHUP));
    ::close(jailed.cgroup_pending);
    jailed.cgroup_pending = -1;
    if (gone)
        ::_exit(1);
    jailed.host_pid = host_pid;
}

struct Spawned {
    pid_t pid { -1 };       // as fork's
    bool in_cgroup { false }; // created in the cgroup (v2): nothing to move
};

// Creates the VMM as PID 1 of a new PID namespace: on v2, inside the cgroup
// made for it when the kernel allows (Cgroup); otherwise by unshare and fork,
// as on v1. The fallback is logged with its reason: it costs the start a
// grace period, but the VMM still gets into its cgroup, so it is no lack.
Result<Spawned> spawn_vmm(Cgroup const& cg)
{
    if (cg.v2 && !cg.dirs.empty()) {
        std::string why;
        int fd = ::open(cg.dirs.front().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#ifdef STRATA_TEST_HOOKS
        // A kernel that refuses the cgroup (kvm_jail_test): a folder that is
        // no cgroup is refused where EPERM or EACCES would be, after the
        // kernel gave the child its pid in the new namespace.
        if (char const* refuse = std::getenv("STRATA_TEST_JAIL_REFUSE_CLONE_INTO_CGROUP"); fd >= 0 && refuse != nullptr && *refuse) {
            ::close(fd);
            fd = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
#endif
        if (fd < 0) {
            why = std::string("open ") + cg.dirs.front() + ": " + std::strerror(errno);
        } else {
            auto child = clone_into_cgroup(fd);
            // The VMM does not exec: its copy would outlive the jail's set-up.
            ::close(fd);
            if (child)
                return Spawned { child.value(), true };
            why = child.error().message;
        }
        std::string const line = "strata: jail: the supervisor moves the VMM into its cgroup, which waits for an RCU grace period "
                                  "(it could not be created in it: " + why + ")\n";
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
    }
    if (::unshare(CLONE_NEWPID) != 0)
        return errno_error("jail: new PID namespace");
    pid_t const child = ::fork();
    if (child < 0)
        return errno_error("jail: fork");
    return Spawned { child, false };
}

} // namespace

Status await_cgroup(Jailed& jailed)
{
    if (jailed.cgroup_pending >= 0)
        read_go_ahead(jailed);
    return ok();
}

Result<Jailed> enter_jail(JailSpec const& spec)
{
    Jailed jailed;
    jailed.host_pid = ::getpid();
    bool const root = ::geteuid() == 0;
    bool namespaces = true;
    if (!root) {
        if (enter_user_namespace()) {
            lack(jailed, "a cgroup, another uid and device nodes of its own (not root: namespaces come from a user namespace)");
        } else {
            lack(jailed, std::string("mount, PID and network namespaces, a root of its own, a cgroup and another uid (not root, and no user namespace: ") + std::strerror(errno) + ")");
            namespaces = false;
        }
    }
    if (!namespaces) {
        STRATA_TRY(set_limits(spec));
        STRATA_TRY(apply_landlock(spec, jailed));
        STRATA_TRY(drop_privileges(spec, false, false, jailed));
        return jailed;
    }
    // Root joins the shared empty network namespace; a user namespace's root
    // cannot (it is the host's), so it makes one of its own. Before the PID
    // namespace: making the shared one forks, and the first child in a new
    // PID namespace must be the VMM (its namespace's PID 1).
    int netns = -1;
    if (spec.new_network && root)
        netns = shared_netns();
    // The jailed uid makes the VMM's sockets, log and pid file in the runtime
    // folder: it owns the folder while the VMM runs (the supervisor gives it
    // back). The store must be readable (and, for captures, writable) by that
    // uid already: the jail does not change the store's owners.
    if (root && spec.lend_runtime_dir && (spec.uid || spec.gid))
        STRATA_TRY(lend_runtime_dir(spec.runtime_dir, spec.uid.value_or(::getuid()), spec.gid.value_or(::getgid())));

    sigset_t forwarded, previous;
    ::sigemptyset(&forwarded);
    for (int sig : kForwarded)
        ::sigaddset(&forwarded, sig);
    ::sigaddset(&forwarded, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &forwarded, &previous);

    int sync[2];
    if (::pipe2(sync, O_CLOEXEC) != 0)
        return errno_error("jail: pipe");
    // How the VMM gets into its cgroup (Cgroup says why): on v2 the cgroup is
    // made first and the VMM created in it; on v1 the supervisor makes it
    // while the VMM builds its root, and the VMM moves itself in.
    bool const v2 = root && cgroup_v2();
    Cgroup cg;
    if (v2)
        cg = make_cgroup(spec, jailed);
    auto spawned = spawn_vmm(cg);
    if (!spawned) {
        for (auto const& dir : cg.dirs)
            ::rmdir(dir.c_str());
        return spawned.error();
    }
    pid_t const child = spawned.value().pid;
    if (child > 0) {
        ::close(sync[0]);
        if (netns >= 0)
            ::close(netns);
        // v1: while the VMM makes its namespaces and root.
        if (root && !v2) {
            cg = make_cgroup(spec, jailed);
        } else if (spawned.value().in_cgroup) {
            std::string const line = "strata: jail: the VMM started in its cgroup " + cg.dirs.front() + "\n";
            [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
        } else {
            move_into_cgroup(cg, child, jailed);
        }
        // Let the VMM go on, its cgroup made (v1) or joined (v2), telling it
        // its pid on the host. The write end stays open for the supervisor's
        // life: the VMM sees it closed only if the supervisor is gone
        // (read_go_ahead).
        [[maybe_unused]] auto w = ::write(sync[1], &child, sizeof child);
        supervise(child, cg, forwarded, spec);
    }

    // The jailed VMM: PID 1 of the new namespace.
    ::close(sync[1]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // As PID 1 the VMM gets a signal from the supervisor only if some thread
    // handles it: one that a thread leaves at its default action is dropped. So
    // SIGTERM and SIGINT stay blocked in every thread the VMM starts, pending
    // until its signalfd (cli/run_support.cpp) reads them.
    sigset_t mask = previous;
    ::sigaddset(&mask, SIGTERM);
    ::sigaddset(&mask, SIGINT);
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);

    int flags = CLONE_NEWNS;
    // Host taps live in the host's network namespace (and a lazily pulled disk
    // reaches its registry through it): only a VM that uses neither leaves it
    // (taps opened before the jail work from anywhere), for the shared empty one
    // or, without it, one of its own; either has nothing but a loopback that is
    // down.
    if (spec.new_network && netns < 0)
        flags |= CLONE_NEWNET;
    if (::unshare(flags) != 0)
        return errno_error("jail: new mount/network namespace");
    if (netns >= 0) {
        if (::setns(netns, CLONE_NEWNET) != 0)
            return errno_error("jail: join the shared network namespace " + std::string(kSharedNetns));
        ::close(netns);
    }
    STRATA_TRY(build_root(spec, root));
    jailed.host_pid = 0;
    jailed.supervised = true;
    jailed.cgroup_pending = sync[0];
    if (root && !v2) {
        // Into the cgroup the supervisor made meanwhile, while this process is
        // one thread and still sees the host's /sys/fs/cgroup, and before it
        // allocates guest memory.
        read_go_ahead(jailed);
        STRATA_TRY(move_self_into_cgroup(spec, jailed));
    }
    // On v2 the VMM is in its cgroup already, or the supervisor moves it in
    // meanwhile; await_cgroup learns the VMM's host pid (and waits for that
    // move) later, just before guest memory is allocated.
    STRATA_TRY(enter_root(spec));
    STRATA_TRY(set_limits(spec));
    STRATA_TRY(apply_landlock(spec, jailed));
    STRATA_TRY(drop_privileges(spec, root, true, jailed));
    return jailed;
}

} // namespace strata
