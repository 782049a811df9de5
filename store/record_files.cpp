#include "store/record_files.h"

#include "base/fd.h"
#include "store/manifest.h"
#include "imaging/store_io.h"

#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

std::string_view record_kind_name(RecordKind kind)
{
    switch (kind) {
    case RecordKind::Vm: return "vm";
    case RecordKind::Template: return "instance-template";
    case RecordKind::MachineImage: return "machine-image";
    }
    return "vm";
}

std::string record_dir(std::string const& store_root, RecordKind kind)
{
    return store_root + "/" + std::string(record_kind_name(kind)) + "s";
}

std::string record_path(std::string const& store_root, RecordKind kind, std::string const& name)
{
    return record_dir(store_root, kind) + "/" + name + ".json";
}

Status ensure_record_dirs(std::string const& store_root)
{
    for (std::string dir : { record_dir(store_root, RecordKind::Vm), record_dir(store_root, RecordKind::Template),
             record_dir(store_root, RecordKind::MachineImage), store_root + "/artifacts" }) {
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
            return errno_error("create directory '" + dir + "'");
    }
    return ok();
}

Result<RecordLock> RecordLock::take(std::string const& store_root, bool exclusive)
{
    RecordLock l;
    l.m_root = store_root;
    l.m_exclusive = exclusive;
    std::string path = store_root + "/store.lock";
    l.m_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l.m_fd < 0)
        return errno_error("open '" + path + "'");
    struct flock fl {};
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    while (::fcntl(l.m_fd, F_OFD_SETLKW, &fl) != 0) {
        if (errno != EINTR)
            return errno_error("lock the store '" + store_root + "'");
    }
    return l;
}

RecordLock::RecordLock(RecordLock&& other) noexcept
    : m_fd(other.m_fd)
    , m_root(std::move(other.m_root))
    , m_exclusive(other.m_exclusive)
{
    other.m_fd = -1;
}

Status RecordLock::require_exclusive() const
{
    if (!m_exclusive)
        return make_error(ErrorKind::Usage, "internal: the store must be locked exclusively for this change");
    return ok();
}

RecordLock::~RecordLock()
{
    // Released explicitly rather than by close(): a descriptor that a child
    // process inherited for a moment, or any other reference to the open file
    // description, would otherwise keep the lock after this object is gone.
    if (m_fd >= 0) {
        struct flock fl {};
        fl.l_type = F_UNLCK;
        fl.l_whence = SEEK_SET;
        (void)::fcntl(m_fd, F_OFD_SETLK, &fl);
        ::close(m_fd);
    }
}

Result<std::string> read_record(std::string const& store_root, RecordKind kind, std::string const& name)
{
    STRATA_TRY(check_object_name(name));
    std::string path = record_path(store_root, kind, name);
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        if (errno == ENOENT)
            return make_error(ErrorKind::NotFound, "no " + std::string(record_kind_name(kind)) + " named '" + name + "'");
        return errno_error("open '" + path + "'");
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    if (static_cast<std::uint64_t>(st.st_size) > kMaxManifestBytes)
        return make_error(ErrorKind::BadInput, "'" + path + "' is larger than 1 MiB");
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    // SAFETY: the string's storage is viewed as bytes to read into.
    STRATA_TRY(pread_all(fd.get(), std::span(reinterpret_cast<std::byte*>(text.data()), text.size()), 0));
    return text;
}

Status write_record(std::string const& store_root, RecordKind kind, std::string const& name, std::string const& text, bool must_be_new)
{
    STRATA_TRY(check_object_name(name));
    std::string path = record_path(store_root, kind, name);
    STRATA_TRY(file, AtomicFile::create(path));
    // SAFETY: the text's bytes, viewed as bytes.
    STRATA_TRY(pwrite_all(file.fd(), std::span(reinterpret_cast<std::byte const*>(text.data()), text.size()), 0));
    auto status = file.commit(must_be_new);
    if (!status && status.error().kind == ErrorKind::Exists)
        return make_error(ErrorKind::Exists, "a " + std::string(record_kind_name(kind)) + " named '" + name + "' already exists");
    return status;
}

Status remove_record(std::string const& store_root, RecordKind kind, std::string const& name)
{
    STRATA_TRY(check_object_name(name));
    std::string path = record_path(store_root, kind, name);
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT)
            return make_error(ErrorKind::NotFound, "no " + std::string(record_kind_name(kind)) + " named '" + name + "'");
        return errno_error("remove '" + path + "'");
    }
    return fsync_parent_dir(path);
}

Result<std::vector<std::string>> record_names(std::string const& store_root, RecordKind kind)
{
    std::string dir = record_dir(store_root, kind);
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
        if (errno == ENOENT)
            return std::vector<std::string>();
        return errno_error("list '" + dir + "'");
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d.get())) {
        std::string n = e->d_name;
        // AtomicFile's temporaries start with '.', and so do hidden files.
        if (n.size() <= 5 || n[0] == '.' || n.compare(n.size() - 5, 5, ".json") != 0)
            continue;
        n.resize(n.size() - 5);
        if (check_object_name(n))
            names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    return names;
}

namespace {

bool label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

} // namespace

Status check_labels(std::map<std::string, std::string> const& labels)
{
    if (labels.size() > 64)
        return make_error(ErrorKind::Usage, "at most 64 labels are allowed");
    for (auto const& [key, value] : labels) {
        bool good = !key.empty() && key.size() <= 63 && key[0] >= 'a' && key[0] <= 'z'
            && std::all_of(key.begin(), key.end(), label_char);
        if (!good)
            return make_error(ErrorKind::Usage,
                "label key '" + key.substr(0, 64) + "' must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter");
        if (value.size() > 63 || !std::all_of(value.begin(), value.end(), label_char))
            return make_error(ErrorKind::Usage, "label value '" + value.substr(0, 64) + "' must be at most 63 characters of a-z, 0-9, '_' or '-'");
    }
    return ok();
}

Status check_metadata(std::map<std::string, std::string> const& metadata)
{
    if (metadata.size() > 128)
        return make_error(ErrorKind::Usage, "at most 128 metadata entries are allowed");
    for (auto const& [key, value] : metadata) {
        bool good = !key.empty() && key.size() <= 128 && std::all_of(key.begin(), key.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        });
        if (!good)
            return make_error(ErrorKind::Usage, "metadata key '" + key.substr(0, 64) + "' must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'");
        if (value.size() > 4096 || value.find('\0') != std::string::npos)
            return make_error(ErrorKind::Usage, "metadata value of '" + key + "' must be at most 4096 bytes without NUL");
    }
    return ok();
}

Result<std::map<std::string, std::string>> parse_key_values(std::string const& text, std::string_view what)
{
    std::map<std::string, std::string> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t comma = text.find(',', pos);
        std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? text.size() : comma + 1;
        if (item.empty())
            continue;
        auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0)
            return make_error(ErrorKind::Usage, std::string(what) + ": '" + item + "' is not key=value");
        if (!out.emplace(item.substr(0, eq), item.substr(eq + 1)).second)
            return make_error(ErrorKind::Usage, std::string(what) + ": key '" + item.substr(0, eq) + "' is given twice");
    }
    return out;
}

namespace record_json {

Error bad(std::string_view what, std::string const& why)
{
    return make_error(ErrorKind::BadInput, std::string(what) + ": " + why);
}

Result<std::string> string_field(nlohmann::json const& j, char const* key, bool required, std::size_t max)
{
    auto it = j.find(key);
    if (it == j.end()) {
        if (required)
            return bad("record", std::string("'") + key + "' is missing");
        return std::string();
    }
    if (!it->is_string() || it->get_ref<std::string const&>().size() > max)
        return bad("record", std::string("'") + key + "' is not a string of at most " + std::to_string(max) + " bytes");
    return it->get<std::string>();
}

Result<std::uint64_t> uint_field(nlohmann::json const& j, char const* key, bool required, std::uint64_t min, std::uint64_t max,
    std::uint64_t fallback)
{
    auto it = j.find(key);
    if (it == j.end()) {
        if (required)
            return bad("record", std::string("'") + key + "' is missing");
        return fallback;
    }
    if (!it->is_number_unsigned())
        return bad("record", std::string("'") + key + "' is not an unsigned integer");
    auto v = it->get<std::uint64_t>();
    if (v < min || v > max)
        return bad("record", std::string("'") + key + "' must be within " + std::to_string(min) + ".." + std::to_string(max));
    return v;
}

Result<bool> bool_field(nlohmann::json const& j, char const* key, bool fallback)
{
    auto it = j.find(key);
    if (it == j.end())
        return fallback;
    if (!it->is_boolean())
        return bad("record", std::string("'") + key + "' is not true or false");
    return it->get<bool>();
}

Result<std::map<std::string, std::string>> string_map(nlohmann::json const& j, char const* key)
{
    std::map<std::string, std::string> out;
    auto it = j.find(key);
    if (it == j.end())
        return out;
    if (!it->is_object() || it->size() > 128)
        return bad("record", std::string("'") + key + "' is not an object of at most 128 strings");
    for (auto const& [k, v] : it->items()) {
        if (!v.is_string())
            return bad("record", std::string("'") + key + "." + k.substr(0, 64) + "' is not a string");
        out.emplace(k, v.get<std::string>());
    }
    return out;
}

nlohmann::json from_map(std::map<std::string, std::string> const& m)
{
    nlohmann::json j = nlohmann::json::object();
    for (auto const& [k, v] : m)
        j[k] = v;
    return j;
}

} // namespace record_json

} // namespace strata
