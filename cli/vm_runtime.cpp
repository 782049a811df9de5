// The runtime side of `strata vms`: whether a VM's VMM runs, starting it detached,
// stopping it, and attaching to its serial console.
#include "cli/vm_support.h"

#include "base/fd.h"
#include "base/sysexits.h"
#include "store/record_files.h"
#include "vmm/api/client.h"
#include "vmm/isolation/jail.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace strata::cli {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int vm_fail(Error const& e)
{
    std::cerr << "strata: " << e.message << "\n";
    return exit_code_for(e.kind);
}

Result<std::map<std::string, std::string>> parse_labels(std::string const& text)
{
    STRATA_TRY(m, parse_key_values(text, "--labels"));
    STRATA_TRY(check_labels(m));
    return m;
}

Result<std::map<std::string, std::string>> parse_metadata(std::string const& text)
{
    STRATA_TRY(m, parse_key_values(text, "--metadata"));
    STRATA_TRY(check_metadata(m));
    return m;
}

namespace {

pid_t read_pid(std::string const& path)
{
    std::ifstream in(path);
    long pid = 0;
    if (!(in >> pid) || pid <= 0 || pid > 1L << 22)
        return 0;
    return static_cast<pid_t>(pid);
}

bool api_answers(std::string const& socket)
{
    auto r = api::api_request(socket, "GET", "/", {}, 500ms);
    return r && r.value().status == 200;
}

// Waits until no VMM holds the VM's lock (it ended, all its threads too), up to
// timeout.
bool wait_gone(RuntimePaths const& paths, std::chrono::milliseconds timeout)
{
    auto end = Clock::now() + timeout;
    while (vmm_lock_held(paths)) {
        if (Clock::now() >= end)
            return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

bool write_all(int fd, char const* data, std::size_t n)
{
    while (n > 0) {
        ssize_t w = ::write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        data += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

std::string log_tail(std::string const& path)
{
    std::ifstream in(path);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

// How long a VM whose VMM was killed may take to let its disks go. The kernel
// needs milliseconds; past this, the command that opens a disk says it is in use.
constexpr auto kReleaseLimit = 10s;

// A VMM that was killed (SIGKILL, the OOM killer) leaves its pid file behind,
// and the kernel may still hold its disks after the VMM lock is gone: io_uring
// drops the files registered with a ring in a worker once the process has
// ended, and each keeps its layer's write lock until then (imaging/layer/
// layer.h, Locks). Such a VM is not yet stopped for a command that opens its
// disks, so this waits until they are let go, then removes the pid file so the
// wait happens once. A VMM started meanwhile takes the VMM lock before it
// writes a pid file of its own, so the file is removed while this holds the
// lock.
void settle_killed_vmm(Store const& store, std::string const& vm, RuntimePaths const& paths)
{
    if (::access(paths.pid_file.c_str(), F_OK) != 0)
        return;
    std::vector<std::string> disks;
    if (auto text = read_record(store.root(), RecordKind::Vm, vm); text)
        if (auto record = parse_vm(text.value()); record)
            for (auto const& d : record.value().disks)
                if (!d.read_only)
                    disks.push_back(d.disk);
    auto const end = Clock::now() + kReleaseLimit;
    bool said = false;
    for (auto const& disk : disks) {
        for (;;) {
            auto held = store.disk_held_for_writing(disk);
            if (!held || !held.value() || Clock::now() >= end || vmm_lock_held(paths))
                break;
            // Said once, so that a command that pauses here says why (the
            // kernel takes milliseconds as a rule; a test waits for this line).
            if (!said)
                std::fprintf(stderr, "strata: vm '%s': its VMM was killed and the kernel still holds its disk '%s'; waiting for it to "
                    "let go (up to %lld s)\n", vm.c_str(), disk.c_str(),
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kReleaseLimit).count()));
            said = true;
            std::this_thread::sleep_for(5ms);
        }
    }
    if (auto lock = try_vmm_lock(paths))
        ::unlink(paths.pid_file.c_str());
}

} // namespace

VmRuntime vm_runtime(Store const& store, std::string const& vm)
{
    VmRuntime rt;
    rt.paths = runtime_paths(store.root(), vm);
    // The lock says whether a VMM lives; the pid file only which process it is.
    rt.running = vmm_lock_held(rt.paths);
    if (!rt.running) {
        settle_killed_vmm(store, vm, rt.paths);
        rt.running = vmm_lock_held(rt.paths);
    }
    rt.pid = rt.running ? read_pid(rt.paths.pid_file) : 0;
    rt.api_ready = rt.running && api_answers(rt.paths.api_socket);
    return rt;
}

Result<VmRuntime> start_vm(Store const& store, std::string const& vm, bool& already_running, bool resume, VmmLaunch const& launch)
{
    already_running = false;
    {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        STRATA_TRY(record, load_vm(held, vm));
        if (record.suspended() && !resume)
            return make_error(ErrorKind::Usage, "vm '" + vm + "' is suspended; continue it with `strata vms resume " + vm + "`");
        if (resume && !record.suspended()) {
            if (vm_runtime(store, vm).running)
                return make_error(ErrorKind::Usage, "vm '" + vm + "' is running, not suspended");
            return make_error(ErrorKind::Usage, "vm '" + vm + "' is not suspended; start it with `strata vms start " + vm + "`");
        }
        if (record.generalized)
            return make_error(ErrorKind::Usage, "vm '" + vm + "' is generalized (its guest identity was removed); capture it with "
                    "`strata machine-images create` and create new VMs from that image instead of starting it");
    }
    VmRuntime rt = vm_runtime(store, vm);
    if (rt.running) {
        already_running = true;
        return rt;
    }
    // A jail with --jail-uid lends the runtime folder to that uid; a supervisor
    // killed with SIGKILL could not give it back. With no VMM holding the lock,
    // root takes it back (only root can have lent it).
    if (struct stat st {}; ::geteuid() == 0 && ::lstat(rt.paths.dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid != 0
        && !vmm_lock_held(rt.paths))
        give_back_runtime_dir(rt.paths.dir);
    STRATA_TRY(make_runtime_dir(rt.paths.dir));
    // The lock is taken here and handed to the VMM (its descriptor is inherited),
    // so no other start can slip in between; held, the files a killed VMM left
    // behind are stale and go.
    auto lock = try_vmm_lock(rt.paths);
    if (!lock) {
        already_running = true;
        return vm_runtime(store, vm);
    }
    for (auto const* p : { &rt.paths.api_socket, &rt.paths.console_socket, &rt.paths.pid_file })
        ::unlink(p->c_str());
    int const lock_fd = lock->get();
    char exe[4096];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return errno_error("find the strata binary (/proc/self/exe)");
    exe[n] = '\0';
    std::string log = rt.paths.dir + "/vmm.log";
    // The arguments are made before fork: the child makes only async-signal-safe calls.
    std::vector<std::string> args { exe, "vmm", "--vm", vm, "--lock-fd", "3" };
    if (launch.jail) {
        args.push_back("--jail");
        if (!launch.jail_uid.empty())
            args.insert(args.end(), { "--jail-uid", launch.jail_uid });
        if (!launch.jail_gid.empty())
            args.insert(args.end(), { "--jail-gid", launch.jail_gid });
    }
    std::vector<char const*> argv;
    for (auto const& a : args)
        argv.push_back(a.c_str());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0)
        return errno_error("fork");
    if (pid == 0) {
        // The child: only async-signal-safe calls until exec.
        ::setsid();
        int in = ::open("/dev/null", O_RDONLY);
        int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
        if (in < 0 || out < 0)
            ::_exit(EX_OSERR);
        ::dup2(in, 0);
        ::dup2(out, 1);
        ::dup2(out, 2);
        // The lock's descriptor, as fd 3 and kept across exec.
        if (lock_fd != 3)
            ::dup2(lock_fd, 3);
        ::fcntl(3, F_SETFD, 0);
        // Nothing else the caller had open reaches the VMM: a jailed VMM would
        // otherwise hold, inside its jail, whatever descriptors its caller left
        // without close-on-exec (a shell's redirections, a parent's files).
        if (::close_range(4, ~0U, 0) != 0)
            for (int fd = 4; fd < 65536; ++fd)
                ::close(fd);
        // SAFETY: execv takes char* const[]; it does not modify the strings.
        ::execv(exe, const_cast<char* const*>(argv.data()));
        ::_exit(EX_OSERR);
    }
    lock.reset(); // the VMM holds it now
    // The VMM writes its own pid file too; writing it here as well lets state
    // checks find the process from its first instant.
    {
        // A new file (O_EXCL, O_NOFOLLOW), renamed into place below.
        std::string const start = rt.paths.pid_file + ".start";
        std::string const text = std::to_string(pid) + "\n";
        ::unlink(start.c_str());
        int fd = ::open(start.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            [[maybe_unused]] auto written = ::write(fd, text.data(), text.size());
            ::close(fd);
        }
    }
    // Only where the VMM has not written its own yet: link() fails when the pid
    // file exists, where a check and a rename would replace a pid file the VMM
    // wrote in between (seen on a loaded host: the pid file then named the jail's
    // supervisor for the VM's whole life).
    ino_t ours = 0;
    if (::link((rt.paths.pid_file + ".start").c_str(), rt.paths.pid_file.c_str()) == 0) {
        if (struct stat st {}; ::stat(rt.paths.pid_file.c_str(), &st) == 0)
            ours = st.st_ino;
    }
    ::unlink((rt.paths.pid_file + ".start").c_str());
    // The VMM writes its own pid file (a new file renamed into place) just after
    // its API listens: a jailed VMM's names the VMM, where this one names the
    // jail's supervisor. The start is done once the API answers and the pid file
    // is the VMM's, so that what it reports is the VMM.
    auto const vmm_wrote_pid = [&] {
        struct stat st {};
        return ours == 0 || ::stat(rt.paths.pid_file.c_str(), &st) != 0 || st.st_ino != ours;
    };
    // A VMM answers once its machine is built: milliseconds on hardware, but a
    // restore that checks a large memory file, or any start inside the emulated
    // KVM machine on a loaded host, was seen taking over 10 s. The wait ends at
    // once when the VMM exits, so a long limit costs a failing start nothing.
    auto end = Clock::now() + 60s;
    auto const fine_until = Clock::now() + 100ms;
    for (;;) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            ::unlink(rt.paths.pid_file.c_str());
            // A guest may finish before the API is polled (a firmware program
            // that prints and exits takes ~30 ms): the VM did start, and ran to
            // a clean end. Only a failed VMM is an error.
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return vm_runtime(store, vm);
            return make_error(ErrorKind::Io, "the VMM of vm '" + vm + "' exited before its API answered; its log (" + log + "):\n" + log_tail(log));
        }
        if (api_answers(rt.paths.api_socket) && vmm_wrote_pid())
            break;
        if (Clock::now() >= end) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return make_error(ErrorKind::Io, "the VMM of vm '" + vm + "' did not answer on its API socket within 60 s; its log (" + log + "):\n"
                    + log_tail(log));
        }
        // A connect to a socket that is not there yet costs microseconds; a
        // coarse poll would add its half-period to every start (a restored VM
        // is up in tens of milliseconds, a firmware VM in under ten). So the
        // first 100 ms are polled every 250 us, then every 2 ms.
        std::this_thread::sleep_for(Clock::now() < fine_until ? std::chrono::microseconds(250) : std::chrono::microseconds(2000));
    }
    return vm_runtime(store, vm);
}

Error api_error(std::string const& vm, api::ApiResponse const& reply)
{
    auto const status = reply.status;
    ErrorKind kind = status == 504 ? ErrorKind::Timeout
        : status == 409             ? ErrorKind::Busy
        : status == 404             ? ErrorKind::NotFound
        : status < 500              ? ErrorKind::Usage
                                    : ErrorKind::Io;
    return make_error(kind, "vm '" + vm + "': " + reply.fault_message());
}

Result<std::string> agent_command(Store const& store, std::string const& vm, std::string const& cmd, std::optional<unsigned> timeout_s,
    unsigned wait_ms)
{
    VmRuntime rt = vm_runtime(store, vm);
    if (!rt.running)
        return make_error(ErrorKind::Usage, "vm '" + vm + "' is not running");
    nlohmann::json body { { "cmd", cmd }, { "wait_ms", wait_ms } };
    if (timeout_s)
        body["timeout_s"] = *timeout_s;
    // The VMM answers within wait_ms; the margin covers a capture the API may be
    // busy with when the request arrives.
    STRATA_TRY(reply, api::api_request(rt.paths.api_socket, "PUT", "/agent", body.dump(), std::chrono::milliseconds(wait_ms) + 60s));
    if (reply.status != 200)
        return api_error(vm, reply);
    return reply.body;
}

Status stop_vm(Store const& store, std::string const& vm, bool force, unsigned timeout_s)
{
    VmRuntime rt = vm_runtime(store, vm);
    if (!rt.running)
        return ok();
    if (!force) {
        // A guest without an i8042 driver ignores it; the timeout then ends it.
        (void)api::api_request(rt.paths.api_socket, "PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})", 5s);
        if (wait_gone(rt.paths, std::chrono::seconds(timeout_s)))
            return ok();
        // Signals go only to the process the lock's holder wrote in the pid
        // file, and only while the lock is held.
        if (vmm_lock_held(rt.paths) && rt.pid > 0)
            ::kill(rt.pid, SIGTERM);
        if (wait_gone(rt.paths, 2s))
            return ok();
    }
    if (vmm_lock_held(rt.paths) && rt.pid > 0)
        ::kill(rt.pid, SIGKILL);
    // A killed VMM is gone once the kernel has torn down its guest's memory, its
    // KVM VM and its io_uring. On a loaded machine that took over 5 s (inside the
    // emulated machine, where `vms stop --force` then failed with the VMM still
    // dying), so the wait is a bound on a hang, not a timing; it ends as soon as
    // the VMM's lock is let go.
    if (!wait_gone(rt.paths, 30s))
        return make_error(ErrorKind::Busy, "the VMM of vm '" + vm + "' (pid " + std::to_string(rt.pid) + ") did not exit");
    // The kernel may still hold the killed VMM's disks: stopped means they are
    // free (settle_killed_vmm, which needs the pid file still there).
    settle_killed_vmm(store, vm, rt.paths);
    // A killed VMM leaves its runtime files behind; they go while the lock is
    // held here, so a VMM starting meanwhile keeps its own.
    if (auto lock = try_vmm_lock(rt.paths)) {
        for (auto const* p : { &rt.paths.api_socket, &rt.paths.console_socket, &rt.paths.pid_file })
            ::unlink(p->c_str());
    }
    return ok();
}

Status suspend_vm(Store const& store, std::string const& vm)
{
    VmRuntime rt = vm_runtime(store, vm);
    if (!rt.running) {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        STRATA_TRY(record, load_vm(held, vm));
        if (record.suspended())
            return ok();
        return make_error(ErrorKind::Usage, "vm '" + vm + "' is not running");
    }
    // The VMM ends right after it replies, and may close the connection before
    // the reply is read: the record and the process's end tell what happened.
    auto reply = api::api_request(rt.paths.api_socket, "PUT", "/vm/suspend", "{}", 120s);
    if (reply && reply.value().status != 200 && reply.value().status != 204)
        return api_error(vm, reply.value());
    if (!wait_gone(rt.paths, 30s))
        return make_error(ErrorKind::Timeout, "the VMM of vm '" + vm + "' did not end within 30 s of its suspend");
    STRATA_TRY(held, RecordLock::take(store.root(), false));
    STRATA_TRY(record, load_vm(held, vm));
    if (!record.suspended())
        return make_error(ErrorKind::Io, "vm '" + vm + "' was not suspended" + (reply ? std::string() : ": " + reply.error().message)
                + " (see " + rt.paths.dir + "/vmm.log)");
    for (auto const* p : { &rt.paths.api_socket, &rt.paths.console_socket, &rt.paths.pid_file })
        ::unlink(p->c_str());
    return ok();
}

Status attach_console(Store const& store, std::string const& vm)
{
    VmRuntime rt = vm_runtime(store, vm);
    if (!rt.running)
        return make_error(ErrorKind::Usage, "vm '" + vm + "' is not running");
    Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock.valid())
        return errno_error("socket");
    sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (rt.paths.console_socket.size() >= sizeof addr.sun_path)
        return make_error(ErrorKind::Usage, "console socket path too long");
    rt.paths.console_socket.copy(addr.sun_path, rt.paths.console_socket.size());
    // SAFETY: sockaddr_un is passed as the generic sockaddr connect expects.
    if (::connect(sock.get(), reinterpret_cast<sockaddr const*>(&addr), sizeof addr) != 0)
        return errno_error("connect to the console of vm '" + vm + "' (" + rt.paths.console_socket + ")");
    bool tty = ::isatty(0) != 0;
    termios saved {};
    if (tty && ::tcgetattr(0, &saved) == 0) {
        termios raw = saved;
        ::cfmakeraw(&raw);
        ::tcsetattr(0, TCSANOW, &raw);
        std::fprintf(stderr, "Connected to vm '%s'; detach with Ctrl-]\r\n", vm.c_str());
    }
    std::signal(SIGPIPE, SIG_IGN);
    Status result = ok();
    bool stdin_open = true;
    char buf[4096];
    for (;;) {
        pollfd fds[2] = { { sock.get(), POLLIN, 0 }, { 0, static_cast<short>(stdin_open ? POLLIN : 0), 0 } };
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            result = errno_error("poll");
            break;
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = ::read(sock.get(), buf, sizeof buf);
            if (n <= 0)
                break; // the VM ended
            if (!write_all(1, buf, static_cast<std::size_t>(n)))
                break;
        }
        if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n <= 0) {
                // Input ended (a pipe or file): keep showing output until the VM ends.
                stdin_open = false;
                continue;
            }
            std::string_view in(buf, static_cast<std::size_t>(n));
            auto detach = in.find('\x1d');
            if (detach != std::string_view::npos)
                in = in.substr(0, detach);
            if (!in.empty() && ::send(sock.get(), in.data(), in.size(), MSG_NOSIGNAL) < 0)
                break;
            if (detach != std::string_view::npos)
                break;
        }
    }
    if (tty) {
        ::tcsetattr(0, TCSANOW, &saved);
        std::fprintf(stderr, "\nDetached from vm '%s'\n", vm.c_str());
    }
    return result;
}

} // namespace strata::cli
