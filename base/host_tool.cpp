// Host tools: PATH search and posix_spawn with the output captured through a pipe.
#include "base/host_tool.h"

#include "base/fd.h"

#include <cstdlib>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace strata {

Result<std::string> find_host_tool(std::string_view name, std::string_view package_hint)
{
    std::string dirs;
    if (char const* path = ::getenv("PATH"); path != nullptr)
        dirs = path;
    dirs += ":/usr/sbin:/sbin";
    for (std::size_t start = 0; start <= dirs.size();) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos)
            end = dirs.size();
        std::string dir = dirs.substr(start, end - start);
        start = end + 1;
        if (dir.empty() || dir[0] != '/')
            continue; // relative PATH entries would depend on the current directory
        std::string candidate = dir + "/" + std::string(name);
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return make_error(ErrorKind::Unavailable,
        std::string(name) + " was not found in PATH, /usr/sbin or /sbin (install " + std::string(package_hint) + ")");
}

Result<HostToolResult> run_host_tool(std::vector<std::string> const& argv, std::vector<std::pair<std::string, std::string>> const& env)
{
    if (argv.empty())
        return make_error(ErrorKind::Internal, "run_host_tool: empty argv");
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return errno_error("create a pipe for " + argv[0]);
    Fd read_end(fds[0]), write_end(fds[1]);

    // The environment: ours, with env's names replaced or added.
    std::vector<std::string> env_strings;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view entry(*e);
        bool replaced = false;
        for (auto const& [k, v] : env)
            replaced = replaced || (entry.size() > k.size() && entry.substr(0, k.size()) == k && entry[k.size()] == '=');
        if (!replaced)
            env_strings.emplace_back(entry);
    }
    for (auto const& [k, v] : env)
        env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto const& a : argv)
        args.push_back(const_cast<char*>(a.c_str())); // posix_spawn's signature; it does not write
    args.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
    pid_t pid = -1;
    int err = ::posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0)
        return errno_error("run " + argv[0], err);
    write_end.reset(); // the child holds the only write end now: EOF when it exits

    HostToolResult result;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(read_end.get(), buf, sizeof buf);
        if (n > 0) {
            result.output.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return errno_error("wait for " + argv[0]);
    }
    if (WIFEXITED(status)) {
        result.exited = true;
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    return result;
}

} // namespace strata
