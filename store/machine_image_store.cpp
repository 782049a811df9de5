#include "store/machine_image_store.h"

#include "store/artifacts.h"
#include "store/memory_chain.h"
#include "imaging/layer/layer.h"
#include "store/store.h"

#include <sys/stat.h>
#include <unistd.h>

namespace strata {

namespace {

std::string disk_manifest_path(std::string const& root, std::string const& name)
{
    return root + "/disks/" + name + ".json";
}

std::string layer_file(std::string const& root, LayerId const& id)
{
    return root + "/layers/" + id.to_string();
}

// Removes a disk this module made (its manifest and, when it made one, its own
// top layer); the layers below it belong to the machine image. image_layers:
// how many of the disk's layers are the image's.
void undo_disk(std::string const& root, ObjectManifest const& m, std::size_t image_layers)
{
    ::unlink(disk_manifest_path(root, m.name).c_str());
    // A disk over the image's layers whose top is still to be made holds no
    // layer of its own: its last layer is the image's, which must stay.
    if (m.layers.size() > image_layers)
        ::unlink(layer_file(root, m.layers.back()).c_str());
}

// The VM's own names for a running-state image's state and memory files: hard
// links (nothing copied; every VM from the image maps the same pages), or
// copies where the file system has no hard links (memory_chain.h).
Status link_machine_state(std::filesystem::path const& from, std::filesystem::path const& to)
{
    std::error_code ec;
    std::filesystem::create_directories(to.parent_path(), ec);
    if (ec)
        return make_error(ErrorKind::Io, "create '" + to.parent_path().string() + "': " + ec.message());
    // The caller holds the record lock and no VM of this name exists: whatever
    // is there was left by an earlier VM of the name and is no one's.
    std::filesystem::remove_all(to, ec);
    return link_state_folder(from, to);
}

} // namespace

Result<ObjectManifest> create_disk_over_layers(RecordLock const& held, std::string const& name, std::vector<LayerId> const& layers,
    std::uint64_t size, std::string const& source, bool top_now)
{
    STRATA_TRY(held.require_exclusive());
    STRATA_TRY(check_object_name(name));
    if (layers.size() + 1 > kMaxManifestLayers)
        return make_error(ErrorKind::Usage, "disk '" + name + "' would have too many layers");
    std::string path = disk_manifest_path(held.root(), name);
    if (::access(path.c_str(), F_OK) == 0)
        return make_error(ErrorKind::Exists, "a disk named '" + name + "' already exists");
    for (auto const& id : layers)
        if (::access(layer_file(held.root(), id).c_str(), F_OK) != 0)
            return make_error(ErrorKind::NotFound, "layer " + id.to_string() + " is missing from the store");
    ObjectManifest m { ObjectKind::Disk, name, size, layers, utc_now(), source, {}, {}, nlohmann::json::object() };
    // Over frozen layers the writable top is made at the disk's first writable
    // open (Store::writable_disk), which keeps VM creation to manifest writes. A
    // disk with no layers (scratch) needs its top now, and so does one that is
    // to be restored: making a layer file (and syncing it) at start would add
    // to the time before the restored guest runs.
    std::optional<LayerId> top;
    if (layers.empty() || top_now) {
        top = LayerId::random();
        STRATA_TRY(engine, make_engine(EngineKind::Sync, 8));
        STRATA_TRY(layer, Layer::create(layer_file(held.root(), *top), size, *top, *engine));
        STRATA_TRY(layer->flush());
        m.layers.push_back(*top);
    }
    Status saved = [&]() -> Status {
        STRATA_TRY(file, AtomicFile::create(path));
        std::string text = encode_object(m);
        // SAFETY: the text's bytes, viewed as bytes.
        STRATA_TRY(pwrite_all(file.fd(), std::span(reinterpret_cast<std::byte const*>(text.data()), text.size()), 0));
        return file.commit(true);
    }();
    if (!saved) {
        if (top)
            ::unlink(layer_file(held.root(), *top).c_str());
        if (saved.error().kind == ErrorKind::Exists)
            return make_error(ErrorKind::Exists, "a disk named '" + name + "' already exists");
        return saved.error();
    }
    return m;
}

Result<MachineImageRecord> capture_stopped_vm(Store& store, VmRecord const& vm, MachineImageRecord image)
{
    STRATA_TRY(ensure_record_dirs(store.root()));
    {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        if (read_record(held.root(), RecordKind::MachineImage, image.name))
            return make_error(ErrorKind::Exists, "a machine-image named '" + image.name + "' already exists");
    }
    image.spec = vm.spec;
    image.source_vm = SourceVmInfo { vm.name, vm.labels, vm.metadata, vm.instance_id };
    image.generalized = vm.generalized;
    image.stall_us = 0;
    image.source = "vm:" + vm.name;
    image.created = utc_now();
    image.disks.clear();
    for (auto const& d : vm.disks) {
        MachineImageDisk out { d.id, d.read_only, d.boot, d.scratch, d.cache, 0, {}, {} };
        if (d.scratch) {
            STRATA_TRY(m, store.get(ObjectKind::Disk, d.disk));
            out.size = m.size;
            image.disks.push_back(out);
            continue;
        }
        // A VMM running on the disk holds its top's write lock, which makes this
        // fail (Busy) before anything changes.
        STRATA_TRY(before, store.get(ObjectKind::Disk, d.disk));
        auto frozen = store.freeze_disk(d.disk);
        if (!frozen)
            return frozen.error().context("freeze disk '" + d.disk + "'");
        out.size = before.size;
        out.layers = frozen.value();
        image.disks.push_back(out);
    }
    STRATA_TRY(record_machine_image(store, image));
    STRATA_TRY(held, RecordLock::take(store.root(), false));
    return load_machine_image(held, image.name);
}

void apply_overrides(VmRecord& vm, VmOverrides const& overrides)
{
    if (overrides.vcpus)
        vm.spec.vcpus = *overrides.vcpus;
    if (overrides.memory_mib)
        vm.spec.memory_mib = *overrides.memory_mib;
    if (overrides.cmdline)
        vm.spec.boot.cmdline = *overrides.cmdline;
    if (overrides.description)
        vm.description = *overrides.description;
    if (overrides.labels)
        vm.labels = *overrides.labels;
    if (overrides.metadata)
        vm.metadata = *overrides.metadata;
    if (overrides.nets) {
        vm.spec.nets = *overrides.nets;
        retarget_mmds(vm.spec.mmds, vm.spec.nets);
    }
    if (overrides.mmds) {
        // An empty list is every interface; with none, check_spec refuses the
        // service (it has nowhere to serve) rather than dropping what was asked.
        vm.spec.mmds = *overrides.mmds;
        if (vm.spec.mmds.enabled() && vm.spec.mmds.interfaces.empty())
            for (auto const& n : vm.spec.nets)
                vm.spec.mmds.interfaces.push_back(n.id);
    }
    fill_guest_macs(vm.spec.nets);
}

Result<VmRecord> create_vm_from_machine_image(Store& store, std::string const& vm_name, std::string const& image,
    VmOverrides const& overrides)
{
    STRATA_TRY(check_object_name(vm_name));
    STRATA_TRY(ensure_record_dirs(store.root()));
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    if (read_record(store.root(), RecordKind::Vm, vm_name))
        return make_error(ErrorKind::Exists, "a vm named '" + vm_name + "' already exists");
    STRATA_TRY(mi, load_machine_image(held, image));
    VmRecord vm;
    vm.name = vm_name;
    vm.spec = mi.spec;
    vm.labels = mi.source_vm.labels;
    vm.metadata = mi.source_vm.metadata;
    // The new VM itself is never generalized: from a generalized image it is a new
    // instance (provisioned on first boot), from a specialized one the same instance.
    vm.generalized = false;
    vm.instance_id = mi.generalized || mi.source_vm.instance_id.empty() ? new_instance_id() : mi.source_vm.instance_id;
    if (mi.generalized) {
        auto has = [&](char const* key) {
            if (!overrides.metadata)
                return false;
            auto it = overrides.metadata->find(key);
            return it != overrides.metadata->end() && !it->second.empty();
        };
        if (!has("hostname") && !has("user"))
            return make_error(ErrorKind::Usage, "machine-image '" + image + "' is generalized: the new VM needs its provisioning data "
                    "(--metadata hostname=NAME[,user=USER][,ssh-authorized-keys=KEY]; at least hostname or user)");
    }
    vm.source = "machine-image:" + image;
    vm.created = utc_now();
    if (mi.running) {
        // The guest of a running-state image already runs on the image's vCPUs and
        // RAM: it continues with exactly those, or not at all.
        if (overrides.vcpus && *overrides.vcpus != mi.spec.vcpus)
            return make_error(ErrorKind::Usage, "machine-image '" + image + "' holds a running guest with " + std::to_string(mi.spec.vcpus)
                    + " vCPUs; a VM restored from it cannot have --vcpus " + std::to_string(*overrides.vcpus));
        if (overrides.memory_mib && *overrides.memory_mib != mi.spec.memory_mib)
            return make_error(ErrorKind::Usage, "machine-image '" + image + "' holds a running guest with " + std::to_string(mi.spec.memory_mib)
                    + " MiB of RAM; a VM restored from it cannot have --memory " + std::to_string(*overrides.memory_mib));
        vm.restore_from = "machine-image:" + image;
    }
    // Clones are new NICs on the network: two VMs with one MAC confuse every
    // switch and ARP cache between them. That holds for a running-state
    // image's clones too: each gets new MACs, which its restored device
    // presents, and its VMM asks the guest agent to move the interface the
    // driver set up at probe (with the image's MAC) to the new one (Machine::
    // restore). Their guests still share one address, so each interface of a
    // restored clone gets a network namespace of its own (netns=auto); --net
    // overrides name other taps and may give a MAC (mac=).
    VmOverrides effective = overrides;
    if (mi.running) {
        auto const image_nets = vm.spec.nets;
        for (auto& n : vm.spec.nets) {
            n.host_dev_name.clear();
            n.netns_auto = true;
        }
        if (effective.nets) {
            if (effective.nets->size() != image_nets.size())
                return make_error(ErrorKind::Usage, "machine-image '" + image + "' holds a running guest with " + std::to_string(image_nets.size())
                        + " network interfaces; a VM restored from it needs as many --net (it has " + std::to_string(effective.nets->size()) + ")");
            for (std::size_t i = 0; i < image_nets.size(); ++i) {
                auto& o = (*effective.nets)[i];
                if (o.guest_mac.empty() && overrides.keep_macs)
                    o.guest_mac = image_nets[i].guest_mac;
                o.id = image_nets[i].id;
            }
        }
    }
    if (!overrides.keep_macs)
        renew_guest_macs(vm.spec.nets);
    apply_overrides(vm, effective);
    STRATA_TRY(check_spec(vm.spec));
    STRATA_TRY(check_labels(vm.labels));
    STRATA_TRY(check_metadata(vm.metadata));

    std::vector<std::pair<ObjectManifest, std::size_t>> made; // with how many of its layers are the image's
    auto const state_dir = vm_state_dir(store.root(), vm_name);
    auto undo = [&] {
        for (auto const& m : made)
            undo_disk(store.root(), m.first, m.second);
        if (mi.running) {
            std::error_code ec;
            std::filesystem::remove_all(state_dir, ec);
        }
    };
    if (mi.running) {
        if (auto linked = link_machine_state(machine_state_dir(store.root(), image), state_dir); !linked) {
            undo();
            return linked.error().context("vm '" + vm_name + "'");
        }
    }
    for (auto const& d : mi.disks) {
        std::string disk_name = vm_name + "-disk-" + d.id;
        // Scratch disks start empty: their data was never captured.
        auto const& layers = d.scratch ? std::vector<LayerId> {} : d.layers;
        auto m = create_disk_over_layers(held, disk_name, layers, d.size, vm.source, mi.running);
        if (!m) {
            undo();
            return m.error();
        }
        made.emplace_back(m.value(), layers.size());
        vm.disks.push_back(VmDisk { d.id, disk_name, d.read_only, d.boot, d.scratch, d.cache, true });
    }
    if (auto saved = save_vm(held, vm, true); !saved) {
        undo();
        return saved.error();
    }
    return vm;
}

Status delete_machine_image(Store& store, std::string const& name)
{
    STRATA_TRY(ensure_record_dirs(store.root()));
    {
        STRATA_TRY(held, RecordLock::take(store.root(), true));
        STRATA_TRY(m, load_machine_image(held, name));
        (void)m;
        STRATA_TRY(remove_record(store.root(), RecordKind::MachineImage, name));
        // A running-state image's memory and state go with its record.
        std::error_code ec;
        std::filesystem::remove_all(machine_state_dir(store.root(), name), ec);
        STRATA_TRY(gc_artifacts(held));
    }
    // The Store collects the layers only this image named (it asks
    // machine_image_layer_refs for those other images still name).
    STRATA_TRY(store.gc());
    return ok();
}

} // namespace strata
