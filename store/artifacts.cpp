#include "store/artifacts.h"

#include "base/fd.h"
#include "base/sha256.h"
#include "store/machine_image.h"
#include "imaging/store_io.h"
#include "store/template_record.h"
#include "store/vm_record.h"

#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

namespace {

constexpr std::uint64_t kMaxArtifactBytes = 1ULL << 30;

// SHA-256 fed in pieces, as a hex name.
class Hasher {
public:
    void update(std::span<std::byte const> bytes) { m_hash.update(bytes); }
    std::string finish() { return sha256_hex(m_hash.finish()); }

private:
    Sha256Hasher m_hash;
};

// Moves a complete temporary file to artifacts/<digest> (or drops it when that
// digest is already stored: same bytes).
Status install(AtomicFile& file, std::string const& final_path)
{
    if (::access(final_path.c_str(), F_OK) == 0)
        return ok(); // the AtomicFile's destructor removes the temporary copy
    return file.commit(false);
}

} // namespace

std::string artifact_path(std::string const& store_root, std::string const& digest)
{
    return store_root + "/artifacts/" + digest;
}

Result<std::string> put_artifact(RecordLock const& held, std::string const& path)
{
    STRATA_TRY(held.require_exclusive());
    Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid())
        return errno_error("open '" + path + "'");
    struct stat st {};
    if (::fstat(in.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    if (!S_ISREG(st.st_mode))
        return make_error(ErrorKind::Usage, "'" + path + "' is not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > kMaxArtifactBytes)
        return make_error(ErrorKind::Usage, "'" + path + "' is larger than 1 GiB");
    // The digest is known only at the end: copy under a temporary name in
    // artifacts/ (same file system), then rename to the digest.
    STRATA_TRY(file, AtomicFile::create(held.root() + "/artifacts/incoming"));
    Hasher hash;
    std::vector<std::byte> buf(1 << 20);
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    for (std::uint64_t at = 0; at < size;) {
        auto part = std::span(buf).first(static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - at)));
        STRATA_TRY(pread_all(in.get(), part, at));
        hash.update(part);
        STRATA_TRY(pwrite_all(file.fd(), part, at));
        at += part.size();
    }
    std::string digest = hash.finish();
    // AtomicFile commits to the path it was created for: make a second one
    // for the real name only when needed (rename of the temporary file).
    std::string final_path = artifact_path(held.root(), digest);
    if (::access(final_path.c_str(), F_OK) == 0)
        return digest;
    if (::fsync(file.fd()) != 0)
        return errno_error("fsync '" + file.temp_path() + "'");
    if (::rename(file.temp_path().c_str(), final_path.c_str()) != 0)
        return errno_error("rename into '" + final_path + "'");
    STRATA_TRY(fsync_parent_dir(final_path));
    return digest;
}

Result<std::string> put_artifact_bytes(RecordLock const& held, std::span<std::byte const> bytes, std::string const& expected)
{
    STRATA_TRY(held.require_exclusive());
    if (bytes.size() > kMaxArtifactBytes)
        return make_error(ErrorKind::Usage, "an artifact is larger than 1 GiB");
    Hasher hash;
    hash.update(bytes);
    std::string digest = hash.finish();
    if (!expected.empty() && digest != expected)
        return make_error(ErrorKind::BadInput, "artifact digest mismatch: expected " + expected + ", got " + digest);
    std::string final_path = artifact_path(held.root(), digest);
    STRATA_TRY(file, AtomicFile::create(final_path));
    STRATA_TRY(pwrite_all(file.fd(), bytes, 0));
    STRATA_TRY(install(file, final_path));
    return digest;
}

Status require_artifact(RecordLock const& held, std::string const& digest)
{
    STRATA_TRY(check_digest(digest));
    if (::access(artifact_path(held.root(), digest).c_str(), F_OK) != 0)
        return make_error(ErrorKind::NotFound, "boot artifact " + digest.substr(0, 12) + " is missing from the store");
    return ok();
}

Result<std::vector<std::byte>> read_artifact(RecordLock const& held, std::string const& digest)
{
    STRATA_TRY(require_artifact(held, digest));
    std::string path = artifact_path(held.root(), digest);
    Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!in.valid() || ::fstat(in.get(), &st) != 0)
        return errno_error("open '" + path + "'");
    if (static_cast<std::uint64_t>(st.st_size) > kMaxArtifactBytes)
        return make_error(ErrorKind::BadInput, "'" + path + "' is larger than 1 GiB");
    std::vector<std::byte> bytes(static_cast<std::size_t>(st.st_size));
    STRATA_TRY(pread_all(in.get(), bytes, 0));
    Hasher hash;
    hash.update(bytes);
    if (hash.finish() != digest)
        return make_error(ErrorKind::BadInput, "artifact '" + path + "' does not match its digest (corrupted store)");
    return bytes;
}

Result<std::set<std::string>> referenced_artifacts(RecordLock const& held)
{
    std::set<std::string> used;
    auto add = [&](MachineSpec const& spec) {
        for (auto const& d : boot_digests(spec.boot))
            used.insert(d);
    };
    STRATA_TRY(vms, list_vms(held));
    for (auto const& vm : vms)
        add(vm.spec);
    STRATA_TRY(templates, list_templates(held));
    for (auto const& t : templates)
        add(t.spec);
    STRATA_TRY(images, list_machine_images(held));
    for (auto const& m : images)
        add(m.spec);
    return used;
}

Result<std::vector<std::string>> gc_artifacts(RecordLock const& held)
{
    STRATA_TRY(held.require_exclusive());
    STRATA_TRY(used, referenced_artifacts(held));
    std::string dir = held.root() + "/artifacts";
    std::vector<std::string> removed;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d)
        return errno_error("list '" + dir + "'");
    std::vector<std::string> victims;
    while (dirent* e = ::readdir(d.get())) {
        std::string n = e->d_name;
        // Only digest-named files and our own temporaries (left by a crash; no one
        // writes one without the exclusive lock we hold) are ever removed.
        bool temp = n.rfind(".incoming.tmp-", 0) == 0 || (n[0] == '.' && n.find(".tmp-") != std::string::npos && n.size() > 70);
        if ((check_digest(n) && !used.count(n)) || temp)
            victims.push_back(n);
    }
    for (auto const& n : victims)
        if (::unlink((dir + "/" + n).c_str()) == 0 && n[0] != '.')
            removed.push_back(n);
    if (!victims.empty())
        STRATA_TRY(fsync_parent_dir(dir + "/x"));
    return removed;
}

} // namespace strata
