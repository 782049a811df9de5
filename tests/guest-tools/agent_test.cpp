// strata-agent's protocol, provisioning and generalize, on the host: a fake
// Environment (a temporary directory as the guest's root, a recording freezer, a
// clock the test can move) and a socketpair standing for the virtio-console port.
#include "agent.h"
#include "init.h"
#include "provision.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace strata::agent;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

class FakeEnvironment final : public Environment {
public:
    FakeEnvironment()
    {
        m_mounts = {
            { "/dev/vda", "/", "ext4", false },
            { "proc", "/proc", "proc", false },
            { "/dev/vdb", "/data", "ext4", false },
            { "tmpfs", "/run", "tmpfs", false },
            { "/dev/vdc", "/boot", "ext4", true },
            { "/dev/vdb", "/srv/bind", "ext4", false }, // a bind mount of /data
        };
    }
    fs::path root() const override { return m_root; }
    std::vector<Mount> mounts() override { return m_mounts; }
    std::string freeze(std::string const& path) override
    {
        if (path == fail_freeze)
            return "Operation not supported";
        log.push_back("freeze " + path);
        return {};
    }
    std::string thaw(std::string const& path) override
    {
        log.push_back("thaw " + path);
        return {};
    }
    void power_off() override { powered_off = true; }
    void set_hostname(std::string const& name) override { hostname = name; }
    std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now() + offset; }
    std::vector<LinkAddress> link_addresses() override { return links; }
    std::string set_link_address(LinkAddress const& link) override
    {
        if (link.iface == fail_link)
            return "SIOCSIFHWADDR " + link.iface + ": Device or resource busy";
        log.push_back("mac " + link.iface + " " + link.mac);
        for (auto& l : links)
            if (l.iface == link.iface)
                l.mac = link.mac;
        return {};
    }

    std::vector<LinkAddress> links;
    std::string fail_link;
    std::vector<std::string> log;
    std::string fail_freeze;
    bool powered_off { false };
    std::string hostname;
    std::chrono::seconds offset { 0 };

private:
    strata::test::TempDir m_dir { "strata-agent" };
    fs::path m_root = m_dir.path;
    std::vector<Mount> m_mounts;
};

void write(fs::path const& p, std::string const& s)
{
    fs::create_directories(p.parent_path());
    std::ofstream(p) << s;
}

std::string read(fs::path const& p)
{
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The VMM's end of the channel.
class Channel {
public:
    Channel(Agent& agent, Environment& env)
    {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        m_fd = sv[0];
        m_server = std::thread([&agent, &env, fd = sv[1]] {
            serve(fd, agent, env);
            ::close(fd);
        });
    }
    ~Channel()
    {
        ::shutdown(m_fd, SHUT_RDWR);
        ::close(m_fd);
        m_server.join();
    }
    void send_raw(std::string const& s) { REQUIRE(::write(m_fd, s.data(), s.size()) == static_cast<ssize_t>(s.size())); }
    json request(std::string const& line)
    {
        send_raw(line + "\n");
        return next_reply();
    }
    json next_reply()
    {
        std::string line;
        char c;
        while (::read(m_fd, &c, 1) == 1 && c != '\n')
            line += c;
        return json::parse(line);
    }

private:
    int m_fd;
    std::thread m_server;
};

} // namespace

TEST_CASE("ping answers with the agent's identity and echoes the id")
{
    FakeEnvironment env;
    Agent agent(env, "i-123");
    Channel ch(agent, env);
    auto r = ch.request(R"({"id": 7, "cmd": "ping"})");
    CHECK(r["id"] == 7);
    CHECK(r["ok"] == true);
    CHECK(r["result"]["agent"] == "strata-agent");
    CHECK(r["result"]["instance_id"] == "i-123");
    CHECK(r["result"]["hostname"].is_string());
    CHECK(r["result"]["frozen"] == false);
    auto s = ch.request(R"({"id": "abc", "cmd": "ping"})");
    CHECK(s["id"] == "abc");
}

TEST_CASE("freeze freezes writable disk file systems deepest first, once per device, and thaw reverses")
{
    FakeEnvironment env;
    Agent agent(env, "i");
    Channel ch(agent, env);
    auto f = ch.request(R"({"id": 1, "cmd": "freeze", "timeout_s": 30})");
    REQUIRE(f["ok"] == true);
    CHECK(f["result"]["frozen"] == json::array({ "/data", "/" }));
    CHECK(f["result"]["timeout_s"] == 30);
    CHECK(env.log == std::vector<std::string> { "freeze /data", "freeze /" });
    CHECK(ch.request(R"({"id": 2, "cmd": "ping"})")["result"]["frozen"] == true);
    auto again = ch.request(R"({"id": 3, "cmd": "freeze"})");
    CHECK(again["ok"] == false);
    auto t = ch.request(R"({"id": 4, "cmd": "thaw"})");
    REQUIRE(t["ok"] == true);
    CHECK(t["result"]["thawed"] == json::array({ "/", "/data" }));
    CHECK(t["result"]["auto_thawed"] == false);
    CHECK(env.log.back() == "thaw /data");
}

TEST_CASE("a failing freeze thaws what it froze and reports the mount")
{
    FakeEnvironment env;
    env.fail_freeze = "/";
    Agent agent(env, "i");
    Channel ch(agent, env);
    auto f = ch.request(R"({"id": 1, "cmd": "freeze"})");
    CHECK(f["ok"] == false);
    CHECK(f["error"].get<std::string>().find("freeze /:") != std::string::npos);
    CHECK(env.log == std::vector<std::string> { "freeze /data", "thaw /data" });
    CHECK(ch.request(R"({"cmd": "ping"})")["result"]["frozen"] == false);
}

TEST_CASE("the agent thaws by itself after the timeout, and thaw says so")
{
    FakeEnvironment env;
    Agent agent(env, "i");
    Channel ch(agent, env);
    REQUIRE(ch.request(R"({"id": 1, "cmd": "freeze", "timeout_s": 5})")["ok"] == true);
    env.offset = std::chrono::seconds(6); // the VMM went quiet past the timeout
    // serve() wakes at least once a second while frozen.
    for (int i = 0; i < 30 && agent.frozen(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(!agent.frozen());
    CHECK(env.log.back() == "thaw /data");
    auto t = ch.request(R"({"id": 2, "cmd": "thaw"})");
    CHECK(t["ok"] == true);
    CHECK(t["result"]["auto_thawed"] == true);
    CHECK(t["result"]["thawed"].empty());
}

TEST_CASE("malformed requests get errors and the channel stays usable")
{
    FakeEnvironment env;
    Agent agent(env, "i");
    Channel ch(agent, env);
    CHECK(ch.request("not json")["ok"] == false);
    CHECK(ch.request("[1,2]")["ok"] == false);
    CHECK(ch.request(R"({"cmd": 5})")["ok"] == false);
    auto u = ch.request(R"({"id": 9, "cmd": "reboot"})");
    CHECK(u["ok"] == false);
    CHECK(u["id"] == 9);
    CHECK(ch.request(R"({"cmd": "freeze", "timeout_s": 0})")["ok"] == false);
    CHECK(ch.request(R"({"cmd": "freeze", "timeout_s": "10"})")["ok"] == false);
    ch.send_raw(std::string(70 * 1024, 'x'));
    CHECK(ch.next_reply()["error"].get<std::string>().find("64 KiB") != std::string::npos);
    ch.send_raw("tail of the long line\n");
    CHECK(ch.request(R"({"id": 10, "cmd": "ping"})")["ok"] == true);
    CHECK(env.log.empty());
}

TEST_CASE("generalize removes identity and logs, keeps log directories, replies, then powers off")
{
    FakeEnvironment env;
    auto root = env.root();
    write(root / "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(root / "var/lib/dbus/machine-id", "0123\n");
    write(root / "etc/ssh/ssh_host_ed25519_key", "secret");
    write(root / "etc/ssh/ssh_host_ed25519_key.pub", "pub");
    write(root / "etc/ssh/sshd_config", "Port 22\n");
    write(root / kProvisionedMarker, "i-1\n");
    write(root / "var/log/syslog", "x");
    write(root / "var/log/apt/history.log", "x");
    write(root / "var/log/journal/abc/system.journal", "x");
    write(root / "home/alice/.bash_history", "ls\n");
    write(root / "home/alice/notes.txt", "keep me");
    Agent agent(env, "i-1");
    Channel ch(agent, env);
    auto g = ch.request(R"({"id": 1, "cmd": "generalize"})");
    REQUIRE(g["ok"] == true);
    CHECK(g["result"]["power_off"] == true);
    for (int i = 0; i < 50 && !env.powered_off; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(env.powered_off);
    CHECK(fs::exists(root / "etc/machine-id"));
    CHECK(read(root / "etc/machine-id").empty());
    CHECK(!fs::exists(root / "var/lib/dbus/machine-id"));
    CHECK(!fs::exists(root / "etc/ssh/ssh_host_ed25519_key"));
    CHECK(!fs::exists(root / "etc/ssh/ssh_host_ed25519_key.pub"));
    CHECK(fs::exists(root / "etc/ssh/sshd_config"));
    CHECK(!fs::exists(root / kProvisionedMarker));
    CHECK(!fs::exists(root / "var/log/syslog"));
    CHECK(!fs::exists(root / "var/log/apt/history.log"));
    CHECK(fs::is_directory(root / "var/log/apt"));
    CHECK(!fs::exists(root / "var/log/journal"));
    CHECK(!fs::exists(root / "home/alice/.bash_history"));
    CHECK(fs::exists(root / "home/alice/notes.txt"));
}

TEST_CASE("metadata arrives base64-encoded on the command line")
{
    std::string meta = R"({"instance_id":"i-42","hostname":"web-1.example","user":"alice","ssh_authorized_keys":["ssh-ed25519 AAAAC3Nz alice@laptop"]})";
    std::string cmdline = "console=ttyS0 root=/dev/vda strata.meta=" + base64_encode(meta) + " quiet";
    std::string err;
    auto m = metadata_from_cmdline(cmdline, err);
    REQUIRE(m.has_value());
    CHECK(m->instance_id == "i-42");
    CHECK(m->hostname == "web-1.example");
    CHECK(m->user == "alice");
    REQUIRE(m->ssh_authorized_keys.size() == 1);
    CHECK(m->ssh_authorized_keys[0] == "ssh-ed25519 AAAAC3Nz alice@laptop");

    CHECK(!metadata_from_cmdline("console=ttyS0", err).has_value());
    CHECK(!metadata_from_cmdline("strata.meta=%%%", err).has_value());
    CHECK(err.find("base64") != std::string::npos);
    CHECK(!metadata_from_json("[]", err).has_value());
    CHECK(!metadata_from_json(R"({"hostname":"x"})", err).has_value());
    CHECK(err.find("instance_id") != std::string::npos);
    CHECK(!metadata_from_json(R"({"instance_id":"i","ssh_authorized_keys":["a\nb"]})", err).has_value());
    bool ok = false;
    for (std::string s : { "", "f", "fo", "foo", "foob", "fooba", "foobar" })
        CHECK(base64_decode(base64_encode(s), ok) == s);
    CHECK(base64_decode("Zm9vYg", ok) == "foob"); // unpadded, as URL-safe encoders write it
    CHECK(ok);
}

TEST_CASE("provisioning runs once per instance: hostname, user, SSH key, machine-id, marker")
{
    FakeEnvironment env;
    auto root = env.root();
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n");
    write(root / "etc/group", "root:x:0:\nbob:x:1000:\n");
    write(root / "etc/shadow", "root:*:19000:0:99999:7:::\n");
    write(root / "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\told-name\n");
    write(root / "etc/machine-id", "");
    Metadata m { "i-1", "web-1", "alice", { "ssh-ed25519 AAAA alice@laptop" } };
    auto r = provision(root, m);
    CHECK(r.error == "");
    CHECK(r.ran);
    CHECK(read(root / "etc/hostname") == "web-1\n");
    CHECK(read(root / "etc/hosts").find("127.0.1.1\tweb-1\n") != std::string::npos);
    CHECK(read(root / "etc/hosts").find("old-name") == std::string::npos);
    CHECK(read(root / "etc/passwd").find("alice:x:1001:1001::/home/alice:/bin/sh\n") != std::string::npos);
    CHECK(read(root / "etc/group").find("alice:x:1001:\n") != std::string::npos);
    CHECK(read(root / "etc/shadow").find("alice:!:") != std::string::npos);
    CHECK(read(root / "home/alice/.ssh/authorized_keys") == "ssh-ed25519 AAAA alice@laptop\n");
    struct stat st {};
    REQUIRE(::stat((root / "home/alice/.ssh/authorized_keys").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat((root / "home/alice/.ssh").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    CHECK(read(root / "etc/machine-id").size() == 33);
    CHECK(read(root / kProvisionedMarker) == "i-1\n");

    // The same instance booting again changes nothing.
    write(root / "etc/hostname", "changed-by-admin\n");
    auto again = provision(root, m);
    CHECK(!again.ran);
    CHECK(read(root / "etc/hostname") == "changed-by-admin\n");

    // A new instance (from an image) provisions again without duplicating the user or key.
    std::string machine_id = read(root / "etc/machine-id");
    Metadata m2 { "i-2", "web-2", "alice", { "ssh-ed25519 AAAA alice@laptop", "ssh-rsa BBBB ops" } };
    auto r2 = provision(root, m2);
    CHECK(r2.ran);
    CHECK(r2.error == "");
    std::string passwd = read(root / "etc/passwd");
    CHECK(passwd.find("\nalice:") == passwd.rfind("\nalice:"));
    CHECK(read(root / "home/alice/.ssh/authorized_keys") == "ssh-ed25519 AAAA alice@laptop\nssh-rsa BBBB ops\n");
    CHECK(read(root / "etc/machine-id") == machine_id); // not generalized: identity kept
    CHECK(read(root / kProvisionedMarker) == "i-2\n");

    // After generalize, the next instance gets a fresh machine-id.
    generalize(root);
    Metadata m3 { "i-3", "", "", {} };
    CHECK(provision(root, m3).ran);
    CHECK(read(root / "etc/machine-id").size() == 33);
    CHECK(read(root / "etc/machine-id") != machine_id);
}

namespace {

// Runs a shell command; returns its standard output.
std::string shell(std::string const& cmd)
{
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[512];
    while (std::fgets(buf, sizeof buf, p))
        out += buf;
    CHECK(::pclose(p) == 0);
    return out;
}

// The host's ssh-keygen stands for the root's own: `-A -f root` writes the missing
// host keys under root/etc/ssh, as `ssh-keygen -A` in a chroot of root does.
std::string host_keygen(fs::path const& root, std::string const& tool)
{
    CHECK(tool == "/usr/bin/ssh-keygen");
    return std::system(("ssh-keygen -q -A -f " + root.string() + " >/dev/null").c_str()) == 0 ? "" : "ssh-keygen -A failed";
}

} // namespace

TEST_CASE("each instance gets SSH host keys of its own, fingerprinted as ssh-keygen -l prints them, generalize removes them")
{
    FakeEnvironment env;
    auto root = env.root();
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    write(root / "etc/ssh/sshd_config", "");
    write(root / "usr/bin/ssh-keygen", ""); // the root has a keygen (the test runs the host's)
    // The keys an image came with: not this instance's.
    write(root / "etc/ssh/ssh_host_ed25519_key", "old private\n");
    write(root / "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLD old\n");
    write(root / "etc/ssh/ssh_host_dsa_key", "old private\n");

    auto r = provision(root, Metadata { "i-1", "", "", {} }, host_keygen);
    REQUIRE(r.error == "");
    CHECK(!fs::exists(root / "etc/ssh/ssh_host_dsa_key"));
    CHECK(read(root / "etc/ssh/ssh_host_ed25519_key") != "old private\n");
    auto keys = ssh_host_keys(root);
    REQUIRE(keys.size() >= 1);
    std::set<std::string> types;
    for (auto const& k : keys) {
        types.insert(k.type);
        // ssh-keygen -l: "256 SHA256:... comment (ED25519)"
        std::string listed = shell("ssh-keygen -l -E sha256 -f " + (root / fs::path(k.path).relative_path()).string());
        CHECK_MESSAGE(listed.find(" " + k.fingerprint + " ") != std::string::npos, listed, " vs ", k.fingerprint);
        bool noted = false;
        for (auto const& a : r.actions)
            noted = noted || a == "new SSH host key " + k.type + " " + k.fingerprint;
        CHECK(noted);
    }
    CHECK(types.count("ssh-ed25519") == 1);

    // Booting again as the same instance keeps the keys; ping reports them.
    auto first = keys;
    CHECK(!provision(root, Metadata { "i-1", "", "", {} }, host_keygen).ran);
    CHECK(ssh_host_keys(root).size() == first.size());
    CHECK(ssh_host_keys(root)[0].fingerprint == first[0].fingerprint);
    Agent agent(env, "i-1");
    auto ping = json::parse(agent.handle_line(R"({"id":1,"cmd":"ping"})"));
    REQUIRE(ping["result"]["ssh_host_keys"].size() == first.size());
    CHECK(ping["result"]["ssh_host_keys"][0]["fingerprint"] == first[0].fingerprint);
    CHECK(ping["result"]["ssh_host_keys"][0]["type"] == first[0].type);

    // Generalize removes them; the next instance makes new ones.
    generalize(root);
    CHECK(ssh_host_keys(root).empty());
    REQUIRE(provision(root, Metadata { "i-2", "", "", {} }, host_keygen).error == "");
    auto second = ssh_host_keys(root);
    REQUIRE(second.size() == first.size());
    for (std::size_t i = 0; i < second.size(); ++i)
        CHECK(second[i].fingerprint != first[i].fingerprint);

    // A clone of a provisioned machine (a new instance id, no generalize) gets new keys too.
    REQUIRE(provision(root, Metadata { "i-3", "", "", {} }, host_keygen).error == "");
    CHECK(ssh_host_keys(root)[0].fingerprint != second[0].fingerprint);
}

TEST_CASE("SSH host keys: a root without an SSH server gets none, one without ssh-keygen keeps its keys, a failing keygen is an error")
{
    FakeEnvironment env;
    auto root = env.root();
    int calls = 0;
    auto counting = [&](fs::path const&, std::string const&) { ++calls; return std::string(); };
    CHECK(provision(root, Metadata { "i-1", "", "", {} }, counting).error == "");
    CHECK(calls == 0);
    CHECK(!fs::exists(root / "etc/ssh"));

    write(root / "etc/ssh/sshd_config", "");
    write(root / "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLD old\n");
    auto kept = provision(root, Metadata { "i-2", "", "", {} }, counting);
    CHECK(kept.error == "");
    CHECK(calls == 0);
    CHECK(fs::exists(root / "etc/ssh/ssh_host_ed25519_key.pub"));
    CHECK(std::find(kept.actions.begin(), kept.actions.end(), "kept the SSH host keys: the root file system has no ssh-keygen")
        != kept.actions.end());

    write(root / "bin/ssh-keygen", "");
    auto failed = provision(root, Metadata { "i-3", "", "", {} },
        [](fs::path const&, std::string const&) { return std::string("exited 1"); });
    CHECK(failed.error == "cannot make SSH host keys: exited 1");
    // Not marked provisioned: the next boot tries again.
    CHECK(read(root / kProvisionedMarker) == "i-2\n");
}

TEST_CASE("provisioning refuses bad names")
{
    FakeEnvironment env;
    CHECK(!provision(env.root(), Metadata { "i", "bad_host!", "", {} }).error.empty());
    CHECK(!provision(env.root(), Metadata { "i", "", "Root Admin", {} }).error.empty());
    CHECK(!provision(env.root(), Metadata { "i", "", "root", {} }).error.empty());
    CHECK(!provision(env.root(), Metadata { "", "h", "", {} }).error.empty());
    CHECK(!fs::exists(env.root() / kProvisionedMarker));
}

TEST_CASE("command-line helpers and module loading report what they could not do")
{
    std::string cl = "console=ttyS0 root=/dev/vda ro rootfstype=ext4 root=/dev/vdb";
    CHECK(cmdline_value(cl, "root") == "/dev/vdb");
    CHECK(cmdline_value(cl, "init", "/sbin/init") == "/sbin/init");
    CHECK(cmdline_flag(cl, "ro"));
    CHECK(!cmdline_flag(cl, "rw"));

    FakeEnvironment env;
    write(env.root() / "load-order", "# comment\nkernel/drivers/virtio/virtio.ko\n\n");
    std::string log;
    auto loaded = load_modules(env.root().string(), log);
    CHECK(loaded.empty());
    CHECK(log.find("virtio.ko") != std::string::npos);
}

TEST_CASE("set-macs moves the interface with the old MAC to the new one, once, and bad requests change nothing")
{
    FakeEnvironment env;
    env.links = { { "eth0", "02:00:00:00:00:01" }, { "eth1", "02:00:00:00:00:02" } };
    Agent agent(env, "i-1");
    Channel ch(agent, env);
    auto r = ch.request(R"({"id": 1, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:02", "to": "02:aa:00:00:00:02"}, )"
                          R"({"from": "02:00:00:00:00:09", "to": "02:aa:00:00:00:09"}]})");
    REQUIRE(r["ok"] == true);
    CHECK(r["result"]["moved"] == json::parse(R"([{"name": "eth1", "from": "02:00:00:00:00:02", "to": "02:aa:00:00:00:02"}])"));
    CHECK(r["result"]["missing"] == json::parse(R"(["02:00:00:00:00:09"])"));
    CHECK(env.log == std::vector<std::string> { "mac eth1 02:aa:00:00:00:02" });
    CHECK(env.links[0].mac == "02:00:00:00:00:01");

    // Asked again (a retried request): already done, nothing set.
    r = ch.request(R"({"id": 2, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:02", "to": "02:aa:00:00:00:02"}]})");
    REQUIRE(r["ok"] == true);
    CHECK(r["result"]["already"] == json::parse(R"([{"name": "eth1", "mac": "02:aa:00:00:00:02"}])"));
    CHECK(r["result"]["moved"].empty());
    CHECK(env.log.size() == 1);

    // Malformed: refused whole, no interface touched.
    for (std::string bad : { R"({"id": 3, "cmd": "set-macs"})", R"({"id": 3, "cmd": "set-macs", "interfaces": []})",
             R"({"id": 3, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:01", "to": "02:zz:00:00:00:01"}]})",
             R"({"id": 3, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:01", "to": "03:00:00:00:00:01"}]})",
             R"({"id": 3, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:01", "to": "02:AA:00:00:00:01"}]})",
             R"({"id": 3, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:01"}]})",
             R"({"id": 3, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:01", "to": "02:00:00:00:00:011"}]})" }) {
        r = ch.request(bad);
        CHECK_MESSAGE(r["ok"] == false, bad);
        CHECK(r["error"].get<std::string>().find("set-macs needs") != std::string::npos);
    }
    CHECK(env.log.size() == 1);
    CHECK(env.links[0].mac == "02:00:00:00:00:01");

    // A change the system refuses is an error naming it.
    env.fail_link = "eth0";
    r = ch.request(R"({"id": 4, "cmd": "set-macs", "interfaces": [{"from": "02:00:00:00:00:01", "to": "02:aa:00:00:00:01"}]})");
    CHECK(r["ok"] == false);
    CHECK(r["error"].get<std::string>().find("eth0") != std::string::npos);
}
