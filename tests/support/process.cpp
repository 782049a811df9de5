// fork/exec with three pipes (stdout, stderr, and a close-on-exec pipe that carries
// the child's errno if exec fails), a poll loop that drains the output pipes until
// both close or the deadline passes, then waitpid.
#include "tests/support/process.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace strata::test {

namespace {

struct Pipe {
    int r { -1 };
    int w { -1 };
    ~Pipe()
    {
        if (r >= 0)
            ::close(r);
        if (w >= 0)
            ::close(w);
    }
    void close_write()
    {
        if (w >= 0)
            ::close(w);
        w = -1;
    }
};

Status make_pipe(Pipe& p)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return errno_error("pipe2");
    p.r = fds[0];
    p.w = fds[1];
    return outcome::success();
}

// The child's side: only async-signal-safe calls between fork and exec.
[[noreturn]] void exec_child(ProcessOptions const& o, char* const* argv, char* const* envp, int in_fd, int out_fd,
    int err_fd, int report_fd)
{
    ::setpgid(0, 0);
    if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0)
        goto fail;
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0)
        goto fail;
    ::signal(SIGPIPE, SIG_DFL);
    ::execvpe(argv[0], argv, envp);
fail:
    int e = errno;
    [[maybe_unused]] auto n = ::write(report_fd, &e, sizeof e);
    ::_exit(127);
}

} // namespace

Result<ProcessResult> run_process(ProcessOptions const& o)
{
    if (o.argv.empty())
        return make_error(ErrorKind::Usage, "run_process: empty argv");

    // Everything the child needs is built before fork, so the child allocates nothing.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) {
        std::string entry(*e);
        auto eq = entry.find('=');
        bool overridden = false;
        for (auto const& [k, v] : o.env)
            overridden = overridden || (eq == k.size() && entry.compare(0, eq, k) == 0);
        if (!overridden)
            env_strings.push_back(std::move(entry));
    }
    for (auto const& [k, v] : o.env)
        env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = o.argv;
    std::vector<char*> argv;
    for (auto& s : argv_copy)
        argv.push_back(s.data());
    argv.push_back(nullptr);

    std::string in_path = o.stdin_path.value_or("/dev/null");
    int in_fd = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_fd < 0)
        return errno_error("open stdin '" + in_path + "'");
    Pipe out, err, report;
    Status st = make_pipe(out);
    if (st)
        st = make_pipe(err);
    if (st)
        st = make_pipe(report);
    if (!st) {
        ::close(in_fd);
        return st.error();
    }

    auto start = std::chrono::steady_clock::now();
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        ::close(in_fd);
        return errno_error("fork", e);
    }
    if (pid == 0)
        exec_child(o, argv.data(), envp.data(), in_fd, out.w, err.w, report.w);
    ::setpgid(pid, pid); // also done by the child; whichever runs first wins the race
    ::close(in_fd);
    out.close_write();
    err.close_write();
    report.close_write();

    int exec_errno = 0;
    if (::read(report.r, &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
        ::waitpid(pid, nullptr, 0);
        return errno_error("exec '" + o.argv[0] + "'", exec_errno);
    }

    ProcessResult result;
    auto deadline = start + o.timeout;
    auto kill_child = [pid] {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
    };
    pollfd fds[2] = { { out.r, POLLIN, 0 }, { err.r, POLLIN, 0 } };
    std::string* sinks[2] = { &result.out, &result.err };
    int open_fds = 2;
    while (open_fds > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            result.timed_out = true;
            kill_child();
            break;
        }
        int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 1000)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno_error("poll");
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0)
                continue;
            char buf[65536];
            ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
            if (got > 0) {
                sinks[i]->append(buf, static_cast<size_t>(got));
                if (i == 1 && o.on_stderr)
                    o.on_stderr(result.err);
                if (o.stop_when && !result.stopped && o.stop_when(result.out, result.err)) {
                    result.stopped = true;
                    kill_child();
                }
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                fds[i].fd = -1;
                --open_fds;
            }
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) { }
    // A grandchild that kept the pipes open would have held the loop above until
    // the deadline; either way nothing of the group may survive the call.
    ::kill(-pid, SIGKILL);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (WIFEXITED(status)) {
        result.exited = true;
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    return result;
}

Result<ProcessResult> run_process(std::vector<std::string> argv, std::chrono::milliseconds timeout)
{
    ProcessOptions o;
    o.argv = std::move(argv);
    o.timeout = timeout;
    return run_process(o);
}

std::string ProcessResult::describe() const
{
    std::string s;
    if (timed_out)
        s = "timed out";
    else if (exited)
        s = "exited " + std::to_string(exit_code);
    else
        s = "killed by signal " + std::to_string(signal);
    s += " after " + std::to_string(seconds) + " s";
    if (!err.empty())
        s += "; stderr: " + (err.size() > 2000 ? "..." + err.substr(err.size() - 2000) : err);
    return s;
}

std::string join_argv(std::vector<std::string> const& argv)
{
    std::string s;
    for (auto const& a : argv) {
        if (!s.empty())
            s += ' ';
        if (a.find_first_of(" \t'\"") == std::string::npos && !a.empty())
            s += a;
        else
            s += "'" + a + "'";
    }
    return s;
}

} // namespace strata::test
