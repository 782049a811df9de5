// First-boot provisioning and generalize, on a root directory.
//
// Metadata reaches the guest on the kernel command line as
// `strata.meta=<base64 of a JSON object>`:
//   {"instance_id": "...", "hostname": "...", "user": "...",
//    "ssh_authorized_keys": ["ssh-ed25519 AAAA... comment", ...]}
// Provisioning runs once per instance: it records the instance id in
// /var/lib/strata/provisioned and does nothing while that marker holds the same
// id. It sets the hostname (/etc/hostname, /etc/hosts), creates the user (passwd,
// shadow with a locked password, group, home, ~/.ssh/authorized_keys), gives
// the machine a new /etc/machine-id if it has none and, when the root has an SSH
// server (/etc/ssh/sshd_config) and ssh-keygen, SSH host keys of its own: the keys
// it came with (a clone's, or none after generalize) are removed and the root's
// ssh-keygen -A makes new ones, so no two instances share a host key.
// Generalize removes the instance's identity: machine-id (left empty, as systemd
// expects of images), the D-Bus machine-id, SSH host keys, the provisioning
// marker, logs and the journal, and shell history.
// Threading: single-threaded file operations.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace strata::agent {

struct Metadata {
    std::string instance_id;
    std::string hostname;
    std::string user;
    std::vector<std::string> ssh_authorized_keys;
    // Only from the metadata service (mmds_client.h): the address of the
    // interface it was read through ("a.b.c.d/N") and a default gateway.
    std::string ipv4_address {};
    std::string ipv4_gateway {};
};

inline constexpr char const* kProvisionedMarker = "var/lib/strata/provisioned";

// Finds strata.meta= on a command line and decodes it; nullopt when absent.
// Malformed metadata is an error message in `error`.
std::optional<Metadata> metadata_from_cmdline(std::string const& cmdline, std::string& error);
std::optional<Metadata> metadata_from_json(std::string const& json, std::string& error);

std::string base64_decode(std::string const& in, bool& ok);
std::string base64_encode(std::string const& in);

struct ProvisionResult {
    bool ran { false };        // false: already provisioned for this instance
    std::vector<std::string> actions;
    std::string error;         // empty on success
};

// One SSH host key: its algorithm as the .pub file names it ("ssh-ed25519",
// "ecdsa-sha2-nistp256", "ssh-rsa"), its fingerprint as `ssh-keygen -l` prints it
// ("SHA256:" and the unpadded base64 of the SHA-256 of the key blob) and its path.
struct HostKey {
    std::string type;
    std::string fingerprint;
    std::string path;
};

// The host keys under root/etc/ssh (ssh_host_*_key.pub), sorted by path; files
// that are not a public key line are skipped.
std::vector<HostKey> ssh_host_keys(std::filesystem::path const& root);

// Makes the SSH host keys root lacks with the root's own ssh-keygen (`keygen`,
// its path inside root); returns what went wrong, or an empty string.
using HostKeyGenerator = std::function<std::string(std::filesystem::path const& root, std::string const& keygen)>;

// The generator provisioning uses in the guest: a child chroots into root and runs
// `ssh-keygen -A` there, as a distribution's own first-boot scripts do.
std::string generate_host_keys_in_chroot(std::filesystem::path const& root, std::string const& keygen);

// Provisions `root` (a directory standing for "/") for this instance.
ProvisionResult provision(std::filesystem::path const& root, Metadata const& meta,
    HostKeyGenerator const& keygen = generate_host_keys_in_chroot);

// Removes identity from `root`; returns what was removed, or the first error.
ProvisionResult generalize(std::filesystem::path const& root);

} // namespace strata::agent
