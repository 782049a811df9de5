// `strata images create-rootfs` end to end through build/strata with a temporary
// STRATA_HOME: a tree owned by an ordinary user (files, a symlink, a setuid file,
// a setgid directory, a hard link) becomes an ext4 image whose files are root's
// with their modes kept. The image is read back without mounting: exported raw,
// then `debugfs -R stat|cat` and `e2fsck -fn`. Then every refusal, each with its
// exit code, and a check that no failure, not even a SIGKILL, leaves a file in
// the store's tmp/.
#include "base/host_tool.h"
#include "tests/support/shell.h"
#include "tests/support/process.h"
#include "tests/support/strata_home.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <regex>
#include <csignal>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

using namespace std::chrono_literals;
using strata::test::TempDir;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";

struct Run {
    int code { -1 };
    std::string out, err;
};

Run strata_run(TempDir const& dir, std::vector<std::string> args, std::vector<std::pair<std::string, std::string>> env = {})
{
    auto r = strata::test::run_strata(dir / "home", args, { std::move(env), {}, 120s });
    REQUIRE_MESSAGE(r.has_value(), "could not spawn strata");
    INFO(strata::test::join_argv(args), "\n", r.value().describe());
    REQUIRE(r.value().exited);
    return { r.value().exit_code, r.value().out, r.value().err };
}

std::string tool(char const* name)
{
    auto path = strata::find_host_tool(name, "e2fsprogs");
    REQUIRE_MESSAGE(path, name << " is needed by this test (scripts/install-deps installs it)");
    return path.value();
}

// debugfs -R "CMD" IMAGE: its stdout (debugfs prints its banner on stderr).
std::string debugfs(std::string const& image, std::string const& request)
{
    auto r = strata::test::run_process({ tool("debugfs"), "-R", request, image });
    REQUIRE(r.has_value());
    REQUIRE(r.value().exited);
    return r.value().out;
}

struct InodeFacts {
    std::string type;
    unsigned mode { 0 }, uid { 999 }, gid { 999 };
    std::string link_target;
};

InodeFacts stat_in_image(std::string const& image, std::string const& path)
{
    std::string text = debugfs(image, "stat " + path);
    INFO("debugfs stat ", path, ":\n", text);
    std::smatch m;
    InodeFacts f;
    REQUIRE(std::regex_search(text, m, std::regex(R"(Type: (\w+)\s+Mode:\s+(\d+))")));
    f.type = m[1];
    f.mode = static_cast<unsigned>(std::stoul(m[2], nullptr, 8));
    REQUIRE(std::regex_search(text, m, std::regex(R"(User:\s+(\d+)\s+Group:\s+(\d+))")));
    f.uid = static_cast<unsigned>(std::stoul(m[1]));
    f.gid = static_cast<unsigned>(std::stoul(m[2]));
    if (std::regex_search(text, m, std::regex(R"(Fast link dest: \"([^\"]*)\")")))
        f.link_target = m[1];
    return f;
}

void write_file(std::string const& path, std::string const& text, mode_t mode)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
    REQUIRE(::chmod(path.c_str(), mode) == 0);
}

// A small tree as an ordinary user would have it. Run as root (CI), the tree is
// handed to nobody (65534) first: the image must not carry the host owner either way.
// Modes are set after the chown, since a real chown clears setuid bits.
std::string make_tree(TempDir const& dir)
{
    std::string t = dir / "tree";
    for (char const* d : { "", "/bin", "/etc", "/srv", "/srv/private" })
        REQUIRE(::mkdir((t + d).c_str(), 0755) == 0);
    write_file(t + "/etc/hostname", "strata-guest\n", 0644);
    write_file(t + "/bin/tool", "#!/bin/sh\necho tool\n", 0755);
    write_file(t + "/srv/private/key", "secret\n", 0600);
    REQUIRE(::symlink("tool", (t + "/bin/sh").c_str()) == 0);
    REQUIRE(::link((t + "/etc/hostname").c_str(), (t + "/etc/hostname.link").c_str()) == 0);
    if (::geteuid() == 0) {
        for (char const* p : { "", "/bin", "/etc", "/srv", "/srv/private", "/etc/hostname", "/bin/tool", "/srv/private/key", "/bin/sh" })
            REQUIRE(::lchown((t + p).c_str(), 65534, 65534) == 0);
    }
    REQUIRE(::chmod((t + "/bin/tool").c_str(), 04755) == 0);
    REQUIRE(::chmod((t + "/srv/private").c_str(), 02750) == 0);
    return t;
}

std::size_t entries_in(std::string const& folder)
{
    std::size_t n = 0;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(folder.c_str()), ::closedir);
    REQUIRE(d);
    while (dirent* e = ::readdir(d.get()))
        n += e->d_name[0] != '.';
    return n;
}

} // namespace

TEST_CASE("create-rootfs: a user's tree becomes a root-owned ext4 image with modes, setuid and symlinks kept")
{
    TempDir dir;
    std::string tree = make_tree(dir);
    auto r = strata_run(dir, { "images", "create-rootfs", "root", "--from-dir", tree });
    INFO(r.out, r.err);
    REQUIRE(r.code == 0);
    // Without --size strata picks one and says so: du × 1.3 + inode tables + 64 MiB.
    CHECK(r.out.find("chosen") != std::string::npos);

    auto describe = strata_run(dir, { "images", "describe", "root", "--json" });
    REQUIRE(describe.code == 0);
    auto j = nlohmann::json::parse(describe.out);
    CHECK(j["source"] == "directory");
    std::uint64_t size = j["size"];
    CHECK(size >= 64u << 20);
    CHECK(size % (1 << 20) == 0);
    // The store's metadata names no host path.
    CHECK(strata::test::sh_out("cat '" + (dir / "home/images/root.json") + "'").find(tree) == std::string::npos);
    CHECK(entries_in(dir / "home/tmp") == 0);

    // Read back without mounting: the raw bytes through export.
    std::string raw = dir / "root.raw";
    REQUIRE(strata_run(dir, { "images", "export", "root", raw, "-O", "raw" }).code == 0);
    auto fsck = strata::test::run_process({ tool("e2fsck"), "-fn", raw });
    REQUIRE(fsck.has_value());
    INFO(fsck.value().out, fsck.value().err);
    CHECK(fsck.value().exit_code == 0);

    CHECK(debugfs(raw, "cat /etc/hostname") == "strata-guest\n");
    CHECK(debugfs(raw, "cat /srv/private/key") == "secret\n");
    struct Expect {
        char const* path;
        char const* type;
        unsigned mode;
    };
    for (auto const& e : { Expect { "/", "directory", 0755 }, Expect { "/bin", "directory", 0755 },
             Expect { "/bin/tool", "regular", 04755 }, Expect { "/etc/hostname", "regular", 0644 },
             Expect { "/srv/private", "directory", 02750 }, Expect { "/srv/private/key", "regular", 0600 },
             Expect { "/bin/sh", "symlink", 0777 } }) {
        auto f = stat_in_image(raw, e.path);
        INFO(e.path);
        CHECK(f.type == e.type);
        CHECK(f.mode == e.mode);
        CHECK(f.uid == 0);
        CHECK(f.gid == 0);
    }
    CHECK(stat_in_image(raw, "/bin/sh").link_target == "tool");
    // The hard link is one inode in the image, as on the host.
    auto inode_of = [&](std::string const& p) {
        std::smatch m;
        std::string text = debugfs(raw, "stat " + p);
        REQUIRE(std::regex_search(text, m, std::regex(R"(Inode: (\d+))")));
        return m[1].str();
    };
    CHECK(inode_of("/etc/hostname") == inode_of("/etc/hostname.link"));

    // The host tree is untouched: still the user's, setuid bit still set.
    struct stat st {};
    REQUIRE(::stat((tree + "/bin/tool").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 04755);
    if (::geteuid() == 0)
        CHECK(st.st_uid == 65534);
    else
        CHECK(st.st_uid == ::geteuid());

    // Like any image: a disk clones it, and --size gives an exact size.
    CHECK(strata_run(dir, { "disks", "create", "vm", "--image", "root" }).code == 0);
    REQUIRE(strata_run(dir, { "images", "create-rootfs", "sized", "--from-dir", tree, "--size", "80M" }).code == 0);
    CHECK(nlohmann::json::parse(strata_run(dir, { "images", "describe", "sized", "--json" }).out)["size"] == 80u << 20);
}

TEST_CASE("create-rootfs: refusals have clear messages and sysexits codes, and leave nothing behind")
{
    TempDir dir;
    std::string tree = make_tree(dir);
    REQUIRE(strata_run(dir, { "images", "create-rootfs", "taken", "--from-dir", tree, "--size", "8M" }).code == 0);
    auto refuse = [&](std::vector<std::string> args, int code, std::string const& says,
                      std::vector<std::pair<std::string, std::string>> env = {}) {
        std::vector<std::string> argv { "images", "create-rootfs" };
        argv.insert(argv.end(), args.begin(), args.end());
        auto r = strata_run(dir, argv, std::move(env));
        INFO(strata::test::join_argv(argv), "\nstderr: ", r.err);
        CHECK(r.code == code);
        CHECK(r.err.find(says) != std::string::npos);
        CHECK(entries_in(dir / "home/tmp") == 0);
    };
    refuse({ "taken", "--from-dir", tree }, EX_CANTCREAT, "already exists");
    refuse({ "new", "--from-dir", dir / "missing" }, EX_NOINPUT, "No such file or directory");
    refuse({ "new", "--from-dir", tree + "/etc/hostname" }, EX_USAGE, "is not a directory");
    refuse({ "new", "--from-dir", tree, "--size", "12Q" }, EX_USAGE, "invalid size '12Q'");
    refuse({ "new", "--from-dir", tree, "--size", "1001k" }, EX_USAGE, "multiple of 4 KiB");
    refuse({ "new", "--from-dir" }, EX_USAGE, "--from-dir");
    refuse({ "a/b", "--from-dir", tree }, EX_USAGE, "a/b");

    // Too small for the content: mke2fs's own words, translated into what to do.
    write_file(tree + "/big", std::string(3 << 20, 'x'), 0644);
    refuse({ "new", "--from-dir", tree, "--size", "2M" }, EX_USAGE, "does not fit in an ext4 file system of 2 MiB");
    refuse({ "new", "--from-dir", tree, "--size", "2M" }, EX_USAGE, "Could not allocate block");

    // A missing tool is named with its package; a failing mke2fs is quoted.
    refuse({ "new", "--from-dir", tree }, EX_UNAVAILABLE, "fakeroot was not found", { { "PATH", dir / "empty" } });
    std::string fake_bin = dir / "fake-bin";
    REQUIRE(::mkdir(fake_bin.c_str(), 0755) == 0);
    write_file(fake_bin + "/mke2fs", "#!/bin/sh\necho 'mke2fs: simulated failure' >&2\nexit 1\n", 0755);
    std::string path = fake_bin + ":" + (::getenv("PATH") ? ::getenv("PATH") : "/usr/bin:/bin");
    refuse({ "new", "--from-dir", tree }, EX_DATAERR, "mke2fs: simulated failure", { { "PATH", path } });

    // strata killed mid-build (SIGKILL, as from the OOM killer): the ext4 file was
    // never named, so nothing is left in tmp/. The fake mke2fs kills strata, the
    // parent of its parent (fakeroot), and lets fakeroot end normally, so fakeroot's
    // daemon is stopped as usual rather than left behind.
    write_file(fake_bin + "/mke2fs",
        "#!/bin/sh\nread -r _ _ _ strata _ < /proc/$PPID/stat\nkill -KILL \"$strata\"\nexit 1\n", 0755);
    strata::test::ProcessOptions killed;
    killed.argv = { strata_bin, "images", "create-rootfs", "new", "--from-dir", tree };
    killed.env = { { "PATH", path }, { "STRATA_HOME", dir / "home" } };
    auto k = strata::test::run_process(killed);
    REQUIRE(k.has_value());
    CHECK_FALSE(k.value().exited);
    CHECK(k.value().signal == SIGKILL);
    CHECK(entries_in(dir / "home/tmp") == 0);

    // Nothing was created by any refusal.
    auto list = nlohmann::json::parse(strata_run(dir, { "images", "list", "--json" }).out);
    REQUIRE(list.size() == 1);
    CHECK(list[0]["name"] == "taken");
}
