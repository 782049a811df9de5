// Helpers shared by the machine-image and record tests (with open_store from
// tests/support/temp_store.h): single-block writes and reads through a
// disk's chain, and a stopped VM with two disks and a firmware artifact to capture.
// Threading: test main thread only.
#pragma once

#include "store/artifacts.h"
#include "imaging/layer/layer.h"
#include "store/machine_image_store.h"
#include "store/store.h"
#include "store/template_record.h"
#include "tests/support/shell.h"
#include "tests/support/temp_store.h"

#include <algorithm>
#include <chrono>
#include <dirent.h>
#include <fstream>
#include <set>
#include <csignal>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace strata::test {

inline std::set<std::string> files_in(std::string const& dir)
{
    std::set<std::string> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    REQUIRE(d);
    while (dirent* e = ::readdir(d.get()))
        if (e->d_name[0] != '.')
            out.insert(e->d_name);
    return out;
}

inline void write_block(Store& store, std::string const& disk, std::uint64_t offset, char value)
{
    auto chain = store.open_disk(disk, ChainOptions { CacheMode::Writeback, EngineKind::Sync, 8, false });
    REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    std::vector<std::byte> buf(4096, std::byte(value));
    REQUIRE(write_sync(*chain.value(), offset, buf));
    REQUIRE(flush_sync(*chain.value()));
}

inline char read_block(Store& store, std::string const& disk, std::uint64_t offset)
{
    auto chain = store.open_disk(disk, ChainOptions { CacheMode::Writeback, EngineKind::Sync, 8, true });
    REQUIRE_MESSAGE(chain, (chain ? "" : chain.error().message));
    std::vector<std::byte> buf(4096);
    REQUIRE(read_sync(*chain.value(), offset, buf));
    bool uniform = std::all_of(buf.begin(), buf.end(), [&](std::byte b) { return b == buf[0]; });
    REQUIRE(uniform);
    return static_cast<char>(buf[0]);
}

inline std::string make_file(TempDir const& dir, std::string const& name, std::string const& content)
{
    std::ofstream(dir / name) << content;
    return dir / name;
}

// A stopped VM "vm" with a 1 MiB data disk and a scratch disk, booting `firmware`.
inline VmRecord make_vm(Store& store, TempDir const& dir, std::string const& name = "vm")
{
    REQUIRE(store.create_disk(name + "-data", 1 << 20));
    REQUIRE(store.create_disk(name + "-tmp", 1 << 20));
    auto held = RecordLock::take(store.root(), true);
    REQUIRE(held);
    auto digest = put_artifact(held.value(), make_file(dir, "fw.elf", "pretend firmware"));
    REQUIRE(digest);
    VmRecord vm;
    vm.name = name;
    vm.spec.boot.firmware = digest.value();
    vm.spec.boot.cmdline = "round=1";
    vm.disks = { VmDisk { "data", name + "-data", false, true, false, "none", true },
        VmDisk { "tmp", name + "-tmp", false, false, true, "unsafe", true } };
    vm.labels = { { "team", "blue" } };
    vm.metadata = { { "startup", "echo hi" } };
    REQUIRE(save_vm(held.value(), vm, true));
    return vm;
}

// Records vm again after a test changed it (it exists already).
inline void resave_vm(Store& store, VmRecord const& vm)
{
    auto held = RecordLock::take(store.root(), true);
    REQUIRE(held);
    REQUIRE(save_vm(held.value(), vm, false));
}

inline MachineImageRecord capture(Store& store, VmRecord const& vm, std::string const& name)
{
    MachineImageRecord m;
    m.name = name;
    m.description = "test image";
    m.labels = { { "env", "ci" } };
    auto r = capture_stopped_vm(store, vm, m);
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    return r.value();
}

} // namespace strata::test
