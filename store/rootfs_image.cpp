// create-rootfs: measure the tree, build ext4 with fakeroot + mke2fs -d into the
// store's tmp/ folder, import it with Store::import_image, remove the temporary.
#include "store/rootfs_image.h"

#include "base/fd.h"
#include "base/host_tool.h"

#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <fts.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

namespace {

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kFsBlock = 4096;

// Removes the temporary ext4 file whatever happens after it was created.
struct TempFile {
    std::string path;
    ~TempFile()
    {
        if (!path.empty())
            ::unlink(path.c_str());
    }
};

bool contains(std::string const& text, char const* what) { return text.find(what) != std::string::npos; }

std::string trimmed(std::string text)
{
    while (!text.empty() && (text.front() == '\n' || text.front() == ' '))
        text.erase(0, 1);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
        text.pop_back();
    return text;
}

std::string mib(std::uint64_t bytes)
{
    return std::to_string((bytes + kMiB - 1) / kMiB) + " MiB";
}

// Turns a failed fakeroot/mke2fs run into an error that says what to do.
Error mke2fs_error(HostToolResult const& r, std::string const& dir, TreeUsage const& usage, std::uint64_t size, bool size_chosen)
{
    std::string out = trimmed(r.output);
    if (!r.exited)
        return make_error(ErrorKind::Internal, "mke2fs (under fakeroot) was killed by signal " + std::to_string(r.signal) + ": " + out);
    if (contains(out, "No space left on device"))
        return make_error(ErrorKind::NoSpace, "the store's file system is full while building the ext4 file: " + out);
    if (contains(out, "Permission denied"))
        return make_error(ErrorKind::Permission, "mke2fs could not read all of '" + dir + "': " + out);
    if (contains(out, "Could not allocate") || contains(out, "too big for a") || contains(out, "No free space in the directory")
        || contains(out, "too small")) {
        std::string what = "'" + dir + "' (" + mib(usage.bytes) + " in " + std::to_string(usage.entries)
            + " entries) does not fit in an ext4 file system of " + mib(size);
        if (size_chosen) // our own estimate was wrong: a bug to report, not the user's mistake
            return make_error(ErrorKind::Internal, what + " (the size strata picked; give --size): mke2fs said: " + out);
        return make_error(ErrorKind::Usage, what + "; give a larger --size, or none to let strata pick one. mke2fs said: " + out);
    }
    return make_error(ErrorKind::BadInput,
        "mke2fs -d '" + dir + "' failed (exit " + std::to_string(r.exit_code) + "): " + (out.empty() ? "no output" : out));
}

} // namespace

Result<TreeUsage> measure_tree(std::string const& dir)
{
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        return errno_error("--from-dir '" + dir + "'");
    if (!S_ISDIR(st.st_mode))
        return make_error(ErrorKind::Usage, "--from-dir '" + dir + "' is not a directory");
    std::string root = dir;
    char* roots[] = { root.data(), nullptr };
    std::unique_ptr<FTS, int (*)(FTS*)> fts(::fts_open(roots, FTS_PHYSICAL | FTS_COMFOLLOW | FTS_NOCHDIR, nullptr), ::fts_close);
    if (!fts)
        return errno_error("walk '" + dir + "'");
    TreeUsage usage;
    std::set<std::pair<dev_t, ino_t>> linked; // hard-linked files, counted once as du does
    for (;;) {
        errno = 0;
        FTSENT* e = ::fts_read(fts.get());
        if (e == nullptr)
            break;
        switch (e->fts_info) {
        case FTS_DP: continue; // a directory's second visit
        case FTS_DNR:
        case FTS_ERR:
        case FTS_NS: return errno_error("read '" + std::string(e->fts_path) + "'", e->fts_errno);
        default: break;
        }
        ++usage.entries;
        struct stat const* s = e->fts_statp;
        if (!S_ISDIR(s->st_mode) && s->st_nlink > 1 && !linked.insert({ s->st_dev, s->st_ino }).second)
            continue;
        usage.bytes += static_cast<std::uint64_t>(s->st_blocks) * 512;
    }
    if (errno != 0)
        return errno_error("walk '" + dir + "'");
    return usage;
}

std::uint64_t rootfs_inode_count(TreeUsage const& usage, std::uint64_t size)
{
    return std::max(size / 16384, usage.entries + usage.entries / 4 + 256);
}

std::uint64_t auto_rootfs_size(TreeUsage const& usage)
{
    std::uint64_t inodes = usage.entries + usage.entries / 4 + 256;
    std::uint64_t bytes = usage.bytes + usage.bytes * 3 / 10 + inodes * 256 + 64 * kMiB;
    return (bytes + kMiB - 1) / kMiB * kMiB;
}

Result<RootfsReport> create_rootfs_image(Store& store, std::string const& name, std::string const& dir, RootfsOptions const& options)
{
    // Cheap refusals first: nothing is built for a request that cannot succeed.
    STRATA_TRY(check_object_name(name));
    if (store.get(ObjectKind::Image, name))
        return make_error(ErrorKind::Exists, "an image named '" + name + "' already exists");
    STRATA_TRY(usage, measure_tree(dir));
    // The real path: chown -R -P would change only a symlink given as DIR, not the tree.
    std::unique_ptr<char, void (*)(void*)> real(::realpath(dir.c_str(), nullptr), ::free);
    if (!real)
        return errno_error("--from-dir '" + dir + "'");
    RootfsReport report;
    report.usage = usage;
    report.size_chosen = !options.size;
    report.size = options.size ? *options.size : auto_rootfs_size(usage);
    if (report.size == 0 || report.size % kFsBlock != 0)
        return make_error(ErrorKind::Usage, "--size must be a non-zero multiple of 4 KiB (the file system's block size)");
    report.inodes = rootfs_inode_count(usage, report.size);
    STRATA_TRY(fakeroot, find_host_tool("fakeroot", "fakeroot"));
    STRATA_TRY(mke2fs, find_host_tool("mke2fs", "e2fsprogs"));
    STRATA_TRY(chown, find_host_tool("chown", "coreutils"));
    STRATA_TRY(shell, find_host_tool("sh", "dash"));

    // A sparse file of the full size in the store's tmp/ (the same file system as
    // layers/, so the space check is the real one); mke2fs uses the file's size.
    // Preferably an unnamed O_TMPFILE, so that even SIGKILL or Ctrl-C leaves
    // nothing behind: mke2fs inherits the descriptor (no O_CLOEXEC; the CLI spawns
    // from one thread) and it and the import both reach the file as
    // /proc/self/fd/N. File systems without O_TMPFILE get a named file that
    // TempFile removes on every return path.
    TempFile named;
    Fd fd(::open((store.root() + "/tmp").c_str(), O_TMPFILE | O_RDWR, 0600));
    std::string path;
    if (fd.valid()) {
        path = "/proc/self/fd/" + std::to_string(fd.get());
    } else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        path = store.root() + "/tmp/rootfs-" + LayerId::random().to_string() + ".ext4";
        fd.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!fd.valid())
            return errno_error("create '" + path + "'");
        named.path = path;
    } else {
        return errno_error("create a temporary file in '" + store.root() + "/tmp'");
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(report.size)) != 0)
        return errno_error("size the temporary ext4 file to " + std::to_string(report.size) + " bytes");

    // Under fakeroot, `chown -R 0:0` is recorded by fakeroot's daemon only
    // (FAKEROOTDONTTRYCHOWN), and mke2fs, in the same fakeroot session, sees every
    // file as root's. Arguments travel as positional parameters, never as script text.
    // -b 4096: mke2fs would pick 1 KiB blocks below 512 MiB; 4 KiB matches strata's
    // layer blocks and the guest's pages.
    std::string const script = "\"$5\" -R -h 0:0 -- \"$1\" && exec \"$2\" -q -F -t ext4 -b 4096 -N \"$3\" -E root_owner=0:0 -d \"$1\" \"$4\"";
    STRATA_TRY(run, run_host_tool({ fakeroot, "--", shell, "-c", script, "strata-create-rootfs", real.get(), mke2fs,
                         std::to_string(report.inodes), path, chown },
                        { { "FAKEROOTDONTTRYCHOWN", "1" }, { "LC_ALL", "C" } }));
    if (!run.succeeded())
        return mke2fs_error(run, dir, usage, report.size, report.size_chosen);

    ImportOptions import;
    import.format = ImageFormat::Raw;
    import.description = options.description;
    import.source = "directory";
    import.progress = options.progress;
    STRATA_TRY(manifest, store.import_image(name, path, import));
    report.manifest = manifest;
    return report;
}

} // namespace strata
