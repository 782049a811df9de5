#include "provision.h"

#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <regex>
#include <sstream>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace strata::agent {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string base64_decode(std::string const& in, bool& ok)
{
    // Accepts the standard and the URL-safe alphabets, with or without padding.
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    ok = true;
    std::size_t end = in.size();
    while (end > 0 && in[end - 1] == '=')
        --end;
    for (std::size_t i = 0; i < end; ++i) {
        int v = value(in[i]);
        if (v < 0) {
            ok = false;
            return {};
        }
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return out;
}

std::string base64_encode(std::string const& in)
{
    static char const* const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += alphabet[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0)
        out += alphabet[(acc << (6 - bits)) & 0x3f];
    while (out.size() % 4)
        out += '=';
    return out;
}

std::optional<Metadata> metadata_from_json(std::string const& text, std::string& error)
{
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        error = "metadata is not a JSON object";
        return std::nullopt;
    }
    Metadata m;
    auto str = [&](char const* key, std::string& out) {
        if (j.contains(key)) {
            if (!j[key].is_string()) {
                error = std::string("metadata field ") + key + " is not a string";
                return false;
            }
            out = j[key].get<std::string>();
        }
        return true;
    };
    if (!str("instance_id", m.instance_id) || !str("hostname", m.hostname) || !str("user", m.user))
        return std::nullopt;
    if (j.contains("ssh_authorized_keys")) {
        if (!j["ssh_authorized_keys"].is_array()) {
            error = "metadata field ssh_authorized_keys is not an array";
            return std::nullopt;
        }
        for (auto const& k : j["ssh_authorized_keys"]) {
            if (!k.is_string() || k.get<std::string>().find('\n') != std::string::npos) {
                error = "an SSH key is not a one-line string";
                return std::nullopt;
            }
            m.ssh_authorized_keys.push_back(k.get<std::string>());
        }
    }
    if (m.instance_id.empty()) {
        error = "metadata has no instance_id";
        return std::nullopt;
    }
    return m;
}

std::optional<Metadata> metadata_from_cmdline(std::string const& cmdline, std::string& error)
{
    std::istringstream words(cmdline);
    std::string w;
    while (words >> w) {
        if (w.rfind("strata.meta=", 0) != 0)
            continue;
        bool ok = false;
        std::string text = base64_decode(w.substr(12), ok);
        if (!ok) {
            error = "strata.meta= is not base64";
            return std::nullopt;
        }
        return metadata_from_json(text, error);
    }
    return std::nullopt;
}

namespace {

std::string read_text(fs::path const& p)
{
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool write_text(fs::path const& p, std::string const& text, mode_t mode)
{
    std::error_code ec;
    fs::create_directories(p.parent_path(), ec);
    fs::path tmp = p;
    tmp += ".strata-tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        if (!out)
            return false;
    }
    ::chmod(tmp.c_str(), mode);
    return ::rename(tmp.c_str(), p.c_str()) == 0;
}

std::string trim(std::string s)
{
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
        s.pop_back();
    return s;
}

// The fields of one passwd/group/shadow line.
std::vector<std::string> colon_fields(std::string const& line)
{
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string field;
    while (std::getline(ls, field, ':'))
        f.push_back(field);
    return f;
}

// The passwd entry's fields for `user`, if present.
std::optional<std::vector<std::string>> passwd_entry(std::string const& passwd, std::string const& user)
{
    std::istringstream lines(passwd);
    std::string line;
    while (std::getline(lines, line)) {
        std::vector<std::string> f = colon_fields(line);
        if (f.size() >= 4 && f[0] == user)
            return f;
    }
    return std::nullopt;
}

unsigned next_id(std::string const& table, std::size_t column)
{
    unsigned id = 1000;
    std::istringstream lines(table);
    std::string line;
    while (std::getline(lines, line)) {
        std::vector<std::string> f = colon_fields(line);
        if (f.size() > column) {
            unsigned long v = std::strtoul(f[column].c_str(), nullptr, 10);
            if (v >= 1000 && v < 60000)
                id = std::max(id, static_cast<unsigned>(v) + 1);
        }
    }
    return id;
}

void chown_tree(fs::path const& p, unsigned uid, unsigned gid)
{
    // Best effort: a test running unprivileged cannot chown, a guest can.
    (void)!::lchown(p.c_str(), uid, gid);
    std::error_code ec;
    for (auto const& e : fs::recursive_directory_iterator(p, ec))
        (void)!::lchown(e.path().c_str(), uid, gid);
}

std::string random_machine_id()
{
    // getrandom(2), not /dev/urandom: init provisions the root after moving /dev
    // into it, so the initramfs has no /dev then.
    unsigned char b[16] = {};
    std::size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    static char const hex[] = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s += hex[c >> 4];
        s += hex[c & 0xf];
    }
    return s;
}

// OpenSSL 3 marks the SHA256_Init family deprecated in favour of EVP; the agent
// is linked statically, and EVP would pull every algorithm of OpenSSL into it
// (base/sha256.cpp makes the same choice for strata).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
std::string sha256_fingerprint(std::string const& blob)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, blob.data(), blob.size());
    SHA256_Final(digest, &ctx);
    // SAFETY: digest is SHA256_DIGEST_LENGTH initialised bytes; char aliases anything.
    std::string b64 = base64_encode(std::string(reinterpret_cast<char const*>(digest), sizeof digest));
    while (!b64.empty() && b64.back() == '=')
        b64.pop_back();
    return "SHA256:" + b64;
}
#pragma GCC diagnostic pop

bool is_host_key_file(fs::path const& p)
{
    std::string name = p.filename().string();
    return name.rfind("ssh_host_", 0) == 0;
}

// The root's ssh-keygen, as a path inside the root; empty when it has none.
std::string keygen_in(fs::path const& root)
{
    for (char const* rel : { "usr/bin/ssh-keygen", "bin/ssh-keygen", "usr/local/bin/ssh-keygen" }) {
        std::error_code ec;
        auto st = fs::status(root / rel, ec);
        if (!ec && fs::is_regular_file(st))
            return std::string("/") + rel;
    }
    return {};
}

// A new instance's SSH host keys (see provision.h); notes what it did in r.
void replace_host_keys(fs::path const& root, ProvisionResult& r, HostKeyGenerator const& keygen)
{
    std::error_code ec;
    if (!fs::exists(root / "etc/ssh/sshd_config", ec))
        return;
    std::string tool = keygen_in(root);
    if (tool.empty() || !keygen) {
        r.actions.push_back("kept the SSH host keys: the root file system has no ssh-keygen");
        return;
    }
    std::vector<fs::path> old;
    for (auto const& e : fs::directory_iterator(root / "etc/ssh", ec))
        if (is_host_key_file(e.path()))
            old.push_back(e.path());
    for (auto const& p : old)
        fs::remove(p, ec);
    if (!old.empty())
        r.actions.push_back("removed " + std::to_string(old.size()) + " SSH host key file(s) of an earlier instance");
    std::string err = keygen(root, tool);
    if (!err.empty()) {
        r.error = "cannot make SSH host keys: " + err;
        return;
    }
    for (auto const& k : ssh_host_keys(root))
        r.actions.push_back("new SSH host key " + k.type + " " + k.fingerprint);
}

} // namespace

std::vector<HostKey> ssh_host_keys(fs::path const& root)
{
    std::vector<HostKey> keys;
    std::error_code ec;
    if (!fs::is_directory(root / "etc/ssh", ec))
        return keys;
    std::vector<fs::path> pubs;
    for (auto const& e : fs::directory_iterator(root / "etc/ssh", ec)) {
        std::string name = e.path().filename().string();
        if (is_host_key_file(e.path()) && name.size() > 8 && name.compare(name.size() - 8, 8, "_key.pub") == 0)
            pubs.push_back(e.path());
    }
    std::sort(pubs.begin(), pubs.end());
    for (auto const& p : pubs) {
        std::istringstream line(read_text(p));
        std::string type, b64;
        line >> type >> b64;
        bool ok = false;
        std::string blob = base64_decode(b64, ok);
        if (type.empty() || !ok || blob.empty())
            continue;
        keys.push_back({ type, sha256_fingerprint(blob), "/" + fs::relative(p, root).string() });
    }
    return keys;
}

std::string generate_host_keys_in_chroot(fs::path const& root, std::string const& keygen)
{
    pid_t pid = ::fork();
    if (pid < 0)
        return std::string("fork: ") + std::strerror(errno);
    if (pid == 0) {
        if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0)
            ::_exit(126);
        char const* argv[] = { keygen.c_str(), "-A", nullptr };
        ::execv(keygen.c_str(), const_cast<char* const*>(argv));
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return std::string("waitpid: ") + std::strerror(errno);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return {};
    if (WIFEXITED(status))
        return keygen + " -A exited " + std::to_string(WEXITSTATUS(status));
    return keygen + " -A was killed by signal " + std::to_string(WTERMSIG(status));
}

ProvisionResult provision(fs::path const& root, Metadata const& meta, HostKeyGenerator const& keygen)
{
    ProvisionResult r;
    fs::path marker = root / kProvisionedMarker;
    if (trim(read_text(marker)) == meta.instance_id && !meta.instance_id.empty())
        return r;
    r.ran = true;
    if (meta.instance_id.empty() || meta.instance_id.find_first_of("\n/") != std::string::npos) {
        r.error = "the instance id is empty or malformed";
        return r;
    }

    if (!meta.hostname.empty()) {
        static std::regex const host_re("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$");
        if (meta.hostname.size() > 253 || !std::regex_match(meta.hostname, host_re)) {
            r.error = "invalid hostname '" + meta.hostname + "'";
            return r;
        }
        if (!write_text(root / "etc/hostname", meta.hostname + "\n", 0644)) {
            r.error = "cannot write /etc/hostname";
            return r;
        }
        std::string hosts = read_text(root / "etc/hosts"), kept;
        std::istringstream lines(hosts);
        std::string line;
        while (std::getline(lines, line))
            if (line.rfind("127.0.1.1", 0) != 0)
                kept += line + "\n";
        if (kept.find("127.0.0.1") == std::string::npos)
            kept = "127.0.0.1\tlocalhost\n" + kept;
        std::string short_name = meta.hostname.substr(0, meta.hostname.find('.'));
        kept += "127.0.1.1\t" + meta.hostname + (short_name != meta.hostname ? "\t" + short_name : "") + "\n";
        write_text(root / "etc/hosts", kept, 0644);
        r.actions.push_back("hostname " + meta.hostname);
    }

    if (!meta.user.empty()) {
        static std::regex const user_re("^[a-z_][a-z0-9_-]{0,31}$");
        if (!std::regex_match(meta.user, user_re) || meta.user == "root") {
            r.error = "invalid user name '" + meta.user + "'";
            return r;
        }
        std::string passwd = read_text(root / "etc/passwd");
        unsigned uid, gid;
        std::string home = "/home/" + meta.user;
        if (auto e = passwd_entry(passwd, meta.user)) {
            uid = static_cast<unsigned>(std::stoul((*e)[2]));
            gid = static_cast<unsigned>(std::stoul((*e)[3]));
            if (e->size() > 5 && !(*e)[5].empty())
                home = (*e)[5];
        } else {
            std::string group = read_text(root / "etc/group");
            uid = next_id(passwd, 2);
            gid = std::max(uid, next_id(group, 2));
            std::string shell = fs::exists(root / "bin/bash") ? "/bin/bash" : "/bin/sh";
            if (!passwd.empty() && passwd.back() != '\n')
                passwd += "\n";
            passwd += meta.user + ":x:" + std::to_string(uid) + ":" + std::to_string(gid) + "::" + home + ":" + shell + "\n";
            if (!group.empty() && group.back() != '\n')
                group += "\n";
            group += meta.user + ":x:" + std::to_string(gid) + ":\n";
            std::string shadow = read_text(root / "etc/shadow");
            if (!shadow.empty() && shadow.back() != '\n')
                shadow += "\n";
            shadow += meta.user + ":!:19000:0:99999:7:::\n"; // locked password: SSH keys only
            if (!write_text(root / "etc/passwd", passwd, 0644) || !write_text(root / "etc/group", group, 0644)
                || !write_text(root / "etc/shadow", shadow, 0640)) {
                r.error = "cannot update /etc/passwd, /etc/group or /etc/shadow";
                return r;
            }
            r.actions.push_back("user " + meta.user + " uid " + std::to_string(uid));
        }
        fs::path home_dir = root / fs::path(home).relative_path();
        std::error_code ec;
        fs::create_directories(home_dir / ".ssh", ec);
        ::chmod(home_dir.c_str(), 0755);
        ::chmod((home_dir / ".ssh").c_str(), 0700);
        std::string keys = read_text(home_dir / ".ssh/authorized_keys");
        for (auto const& k : meta.ssh_authorized_keys) {
            if (keys.find(k) != std::string::npos)
                continue;
            if (!keys.empty() && keys.back() != '\n')
                keys += "\n";
            keys += k + "\n";
        }
        if (!write_text(home_dir / ".ssh/authorized_keys", keys, 0600)) {
            r.error = "cannot write authorized_keys";
            return r;
        }
        chown_tree(home_dir, uid, gid);
        r.actions.push_back(std::to_string(meta.ssh_authorized_keys.size()) + " ssh key(s) for " + meta.user);
    }

    if (trim(read_text(root / "etc/machine-id")).empty()) {
        write_text(root / "etc/machine-id", random_machine_id() + "\n", 0444);
        r.actions.push_back("new machine-id");
    }
    replace_host_keys(root, r, keygen);
    if (!r.error.empty())
        return r;
    if (!write_text(marker, meta.instance_id + "\n", 0644)) {
        r.error = "cannot write the provisioning marker";
        return r;
    }
    return r;
}

ProvisionResult generalize(fs::path const& root)
{
    ProvisionResult r;
    r.ran = true;
    std::error_code ec;
    auto remove = [&](fs::path const& rel) {
        fs::path p = root / rel;
        if (fs::exists(fs::symlink_status(p, ec)) && fs::remove_all(p, ec) > 0)
            r.actions.push_back("/" + rel.string());
    };
    // An empty machine-id (not a missing one) tells systemd to make a new one at
    // first boot while keeping / read-only-friendly.
    if (fs::exists(root / "etc/machine-id")) {
        if (!write_text(root / "etc/machine-id", "", 0444)) {
            r.error = "cannot empty /etc/machine-id";
            return r;
        }
        r.actions.push_back("/etc/machine-id (emptied)");
    }
    remove("var/lib/dbus/machine-id");
    if (fs::is_directory(root / "etc/ssh", ec))
        for (auto const& e : fs::directory_iterator(root / "etc/ssh", ec))
            if (e.path().filename().string().rfind("ssh_host_", 0) == 0)
                remove(fs::relative(e.path(), root));
    remove(kProvisionedMarker);
    remove("var/lib/systemd/random-seed");
    remove("var/log/journal");
    remove("root/.bash_history");
    remove("root/.ash_history");
    // Log files go; the directories stay, since daemons expect them.
    if (fs::is_directory(root / "var/log", ec)) {
        std::vector<fs::path> files;
        for (auto const& e : fs::recursive_directory_iterator(root / "var/log", ec))
            if (e.is_regular_file(ec) || e.is_symlink(ec))
                files.push_back(fs::relative(e.path(), root));
        for (auto const& f : files)
            remove(f);
    }
    if (fs::is_directory(root / "home", ec))
        for (auto const& e : fs::directory_iterator(root / "home", ec)) {
            remove(fs::relative(e.path() / ".bash_history", root));
            remove(fs::relative(e.path() / ".ash_history", root));
        }
    return r;
}

} // namespace strata::agent
