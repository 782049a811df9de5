// A stored VM's jail (jail_vm.h).
#include "vmm/isolation/jail_vm.h"

#include "vmm/boot/linux/kernel_cache.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/capability.h>

namespace strata {

namespace {

JailBind kvm_device()
{
    // The KVM device Machine opens (STRATA_KVM_DEVICE may name another); when it
    // is missing the VMM reports that itself, as unjailed.
    char const* kvm = std::getenv("STRATA_KVM_DEVICE");
    return { kvm && *kvm ? std::filesystem::absolute(kvm).string() : std::string("/dev/kvm"), true, true };
}

void add_unlisted_test_path([[maybe_unused]] JailSpec& spec)
{
#ifdef STRATA_TEST_HOOKS
    // A path bound into the jail that Landlock's rules leave out (kvm_jail_test):
    // reachable, yet the VMM must not be able to open it.
    if (char const* unlisted = std::getenv("STRATA_TEST_JAIL_UNLISTED"); unlisted != nullptr && *unlisted)
        spec.binds.push_back({ std::filesystem::absolute(unlisted).string(), true, true, false });
#endif
}

} // namespace

JailSpec jail_spec_for_api(std::string const& dir, JailOptions const& options)
{
    JailSpec spec;
    spec.runtime_dir = dir;
    spec.lend_runtime_dir = false;
    spec.cgroup_name = "strata-vmm-" + std::to_string(::getpid());
    spec.uid = options.uid;
    spec.gid = options.gid;
    spec.binds.push_back(kvm_device());
    for (char const* dev : { "/dev/urandom", "/dev/null" })
        spec.binds.push_back({ dev, true });
    spec.binds.push_back({ "/dev/net/tun", true, true });
    spec.keep_capabilities.push_back(CAP_NET_ADMIN);
    spec.binds.push_back({ dir, true });
    add_unlisted_test_path(spec);
    spec.pids_max = MachineConfig::max_vcpus + kJailThreadsSpare;
    return spec;
}

Result<JailSpec> jail_spec_for_vm(Store& store, MachineConfig const& config, RuntimePaths const& paths, JailOptions const& options)
{
    JailSpec spec;
    spec.runtime_dir = paths.dir;
    spec.cgroup_name = "strata-" + std::filesystem::path(paths.dir).filename().string();
    spec.uid = options.uid;
    spec.gid = options.gid;
    spec.binds.push_back(kvm_device());
    for (char const* dev : { "/dev/urandom", "/dev/null" })
        spec.binds.push_back({ dev, true });
    // Taps the VMM attaches itself live in the host's network namespace; a
    // netns=auto interface prepared before the jail is an open descriptor.
    bool const host_nets = std::any_of(config.nets.begin(), config.nets.end(),
        [&](NetConfig const& n) { return !(n.netns_auto && options.netns_auto_prepared); });
    if (host_nets) {
        spec.binds.push_back({ "/dev/net/tun", true });
        // Attaching to a tap that no uid owns needs CAP_NET_ADMIN (TUNSETIFF).
        spec.keep_capabilities.push_back(CAP_NET_ADMIN);
    }
#ifdef STRATA_TEST_HOOKS
    // The capture tests' synchronisation file (vmm/capture.h), written by the VMM:
    // its folder, before the store's (it may hold the store).
    if (char const* points = std::getenv("STRATA_TEST_CAPTURE_POINTS"); points != nullptr && *points)
        spec.binds.push_back({ std::filesystem::absolute(points).parent_path().string(), true, true });
    add_unlisted_test_path(spec);
#endif
    spec.binds.push_back({ paths.dir, true });
    if (store.root().empty() || store.root()[0] != '/')
        return make_error(ErrorKind::Usage, "the jail needs the store's path to be absolute, not '" + store.root() + "'");
    spec.binds.push_back({ store.root(), true });
    std::string const artifacts = store.root() + "/artifacts";
    struct stat st {};
    if (::stat(artifacts.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        spec.binds.push_back({ artifacts, false });

    bool lazy = false;
    std::uint64_t largest = config.memory_mib << 20;
    for (auto const& disk : config.disks) {
        if (!disk.path.empty()) {
            std::string const path = std::filesystem::absolute(disk.path).string();
            if (::stat(path.c_str(), &st) != 0)
                return errno_error("jail: find disk " + path);
            largest = std::max<std::uint64_t>(largest, static_cast<std::uint64_t>(st.st_size));
            bool const in_store = path.rfind(store.root() + "/", 0) == 0;
            if (!in_store)
                spec.binds.push_back({ path, !disk.read_only });
            continue;
        }
        if (disk.store_disk.empty())
            continue;
        STRATA_TRY(manifest, store.get(ObjectKind::Disk, disk.store_disk));
        largest = std::max(largest, manifest.size);
        if (!store.require_complete(manifest.layers, "jail"))
            lazy = true;
    }
    // A Linux kernel's decompressed copies are cached outside the store unless
    // STRATA_HOME is set (vmm/boot/linux/kernel_cache.h).
    if (!config.kernel.empty()) {
        if (auto cache = linux_boot::default_kernel_cache_dir()) {
            std::error_code ec;
            std::filesystem::create_directories(*cache, ec);
            std::string const dir = std::filesystem::absolute(*cache).lexically_normal().string();
            if (!ec && dir.rfind(store.root() + "/", 0) != 0)
                spec.binds.push_back({ dir, true, true });
        }
    }
    if (lazy) {
        for (char const* dir : { "/etc", "/usr/share/ca-certificates" })
            if (::stat(dir, &st) == 0)
                spec.binds.push_back({ dir, false });
    }
    spec.new_network = !host_nets && !lazy;
    spec.memory_max = (config.memory_mib << 20) + kJailMemoryOverhead;
    spec.cpus = config.vcpus + 1;
    spec.pids_max = config.vcpus + kJailThreadsSpare;
    spec.file_size = 2 * largest + (1ull << 30);
    return spec;
}

} // namespace strata
