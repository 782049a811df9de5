// The probe kernels booted on real KVM through the Linux loader directly (no
// Machine, no CLI): the loader writes the kernel, zero page or hvm_start_info,
// tables and initrd into GuestRam, the entry state goes into the vCPU, and a
// minimal run loop serves the serial port and the exit port. A probe exits 0
// only when every check of what it was handed passed. Label kvm.
#include "tests/vmm/linux_test_util.h"
#include "vmm/kvm/cpu_template.h"
#include "vmm/kvm/guest_ram.h"
#include "vmm/kvm/kvm.h"
#include "vmm/boot/linux/linux_loader.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"

#include <doctest/doctest.h>

#include <zlib.h>

#include <chrono>
#include <iostream>
#include <sys/wait.h>

using namespace strata;
using namespace strata::linux_boot;

namespace {

struct ProbeRun {
    int exit_value { -1 };
    std::string serial;
};

std::string probe_path(char const* name) { return std::string(STRATA_BUILD_DIR) + "/firmware/" + name; }

ProbeRun boot_probe(char const* name, LinuxLoadOptions opt, std::uint64_t ram_mib = 128)
{
    ProbeRun out;
    auto kvm = Kvm::open();
    REQUIRE(kvm.has_value());
    auto vm = Vm::create(*kvm.value());
    REQUIRE(vm.has_value());
    auto ram = GuestRam::create(*vm.value(), ram_mib << 20);
    REQUIRE(ram.has_value());
    REQUIRE(vm.value()->add_interrupt_controllers().has_value());
    auto kernel = test::read_file(probe_path(name));
    REQUIRE(!kernel.empty());
    auto setup = load_linux(ram.value()->memory(), kernel, opt);
    STRATA_REQUIRE_OK(setup);

    auto vcpu = Vcpu::create(*vm.value(), 0);
    REQUIRE(vcpu.has_value());
    auto cpuid = kvm.value()->supported_cpuid().value();
    apply_cpu_template(CpuTemplate::Minimal, cpuid);
    REQUIRE(vcpu.value()->set_cpuid(cpuid, 1).has_value());
    REQUIRE(vcpu.value()->setup_lapic().has_value());
    auto regs = vcpu.value()->get_regs().value();
    auto sregs = vcpu.value()->get_sregs().value();
    apply_entry_state(setup.value().entry, regs, sregs);
    REQUIRE(vcpu.value()->set_sregs(sregs).has_value());
    REQUIRE(vcpu.value()->set_regs(regs).has_value());

    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        auto ran = vcpu.value()->run();
        REQUIRE(ran.has_value());
        kvm_run& r = vcpu.value()->run_state();
        if (r.exit_reason == KVM_EXIT_IO) {
            // SAFETY: KVM places the I/O data inside the shared kvm_run mapping at data_offset.
            auto* data = reinterpret_cast<std::uint8_t*>(&r) + r.io.data_offset;
            if (r.io.direction == KVM_EXIT_IO_OUT && r.io.port == 0x3f8) {
                for (std::uint32_t i = 0; i < r.io.count; ++i)
                    out.serial += static_cast<char>(data[i * r.io.size]);
            } else if (r.io.direction == KVM_EXIT_IO_OUT && r.io.port == 0xf4) {
                std::uint32_t v = 0;
                std::memcpy(&v, data, std::min<std::size_t>(r.io.size, 4));
                out.exit_value = static_cast<int>(v);
                break;
            } else if (r.io.direction == KVM_EXIT_IO_IN) {
                // The 16550's line status says "transmitter empty"; other ports read 0xff.
                std::memset(data, r.io.port == 0x3fd ? 0x60 : 0xff, std::size_t(r.io.size) * r.io.count);
            }
            continue;
        }
        if (r.exit_reason == KVM_EXIT_HLT || r.exit_reason == KVM_EXIT_SHUTDOWN || r.exit_reason == KVM_EXIT_FAIL_ENTRY
            || r.exit_reason == KVM_EXIT_INTERNAL_ERROR) {
            std::cout << vcpu.value()->dump_registers();
            FAIL("the probe stopped with exit reason " << r.exit_reason);
        }
    }
    std::cout << out.serial;
    return out;
}

LinuxLoadOptions with_initrd(std::vector<std::byte> const& initrd, std::string extra = {})
{
    LinuxLoadOptions opt;
    // SAFETY: zlib takes the bytes as Bytef.
    auto crc = crc32(0, reinterpret_cast<Bytef const*>(initrd.data()), static_cast<uInt>(initrd.size()));
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08lx", crc);
    opt.cmdline = "console=ttyS0 initrd_size=" + std::to_string(initrd.size()) + " initrd_crc32=" + hex + extra;
    opt.rsdp_addr = 0;
    return opt;
}

std::vector<std::byte> initrd_of(std::size_t n)
{
    std::vector<std::byte> b(n);
    std::uint32_t x = 7;
    for (auto& v : b) {
        x = x * 1664525 + 1013904223;
        v = static_cast<std::byte>(x >> 24);
    }
    return b;
}

} // namespace

TEST_CASE("probe.vmlinux passes every check through the 64-bit entry")
{
    auto initrd = initrd_of(40 * 1024 + 123);
    auto opt = with_initrd(initrd);
    opt.initrd = std::span<std::byte const>(initrd);
    auto r = boot_probe("probe.vmlinux", opt);
    CHECK(r.serial.find("all checks passed") != std::string::npos);
    CHECK(r.exit_value == 0);
}

TEST_CASE("probe.bzImage passes every check with its ELF payload entered at 64 bits")
{
    auto initrd = initrd_of(30000);
    auto opt = with_initrd(initrd);
    opt.initrd = std::span<std::byte const>(initrd);
    auto r = boot_probe("probe.bzImage", opt);
    CHECK(r.serial.find("loader=ff") != std::string::npos);
    CHECK(r.exit_value == 0);
}

TEST_CASE("probe-pvh.elf passes every check through PVH")
{
    auto initrd = initrd_of(20000);
    auto opt = with_initrd(initrd);
    opt.initrd = std::span<std::byte const>(initrd);
    auto r = boot_probe("probe-pvh.elf", opt);
    CHECK(r.serial.find("PVH entry") != std::string::npos);
    CHECK(r.exit_value == 0);
}

TEST_CASE("a probe fails when the initrd is not what the command line says")
{
    auto initrd = initrd_of(4096);
    auto opt = with_initrd(initrd);
    auto other = initrd_of(4096);
    other[100] ^= std::byte { 1 };
    opt.initrd = std::span<std::byte const>(other);
    auto r = boot_probe("probe.vmlinux", opt);
    CHECK(r.serial.find("initrd crc32") != std::string::npos);
    CHECK(r.exit_value == 1);
}

namespace {

struct Command {
    int exit_code;
    std::string output;
};

Command run(std::string const& cmd)
{
    Command c { -1, {} };
    FILE* p = ::popen((cmd + " 2>&1 </dev/null").c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        c.output.append(buf, n);
    int status = ::pclose(p);
    c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return c;
}

// Writes an initrd file and returns the command-line words announcing it.
std::string write_initrd(std::string const& path, std::size_t n)
{
    auto b = initrd_of(n);
    test::write_file(path, b);
    // SAFETY: zlib takes the bytes as Bytef.
    auto crc = crc32(0, reinterpret_cast<Bytef const*>(b.data()), static_cast<uInt>(b.size()));
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08lx", crc);
    return "initrd_size=" + std::to_string(n) + " initrd_crc32=" + hex;
}

} // namespace

TEST_CASE("strata run --kernel boots each probe kernel, which exits 0 only when every check passed")
{
    auto dir = test::make_temp_dir("probe-run");
    std::string initrd = (dir / "initrd").string();
    std::string words = write_initrd(initrd, 12345);
    std::string strata = std::string(STRATA_BUILD_DIR) + "/strata";
    for (char const* probe : { "probe.vmlinux", "probe.bzImage", "probe-pvh.elf" }) {
        CAPTURE(probe);
        auto c = run(strata + " run --memory 256 --cpu-template minimal --kernel " + probe_path(probe) + " --initrd "
            + initrd + " --cmdline 'console=ttyS0 " + words + "'");
        INFO(c.output);
        CHECK(c.exit_code == 0);
        CHECK(c.output.find("all checks passed") != std::string::npos);
    }
    // The vmlinux has no PVH note: asking for PVH is a usage error, not a boot.
    auto pvh = run(strata + " run --memory 256 --boot-protocol pvh --kernel " + probe_path("probe.vmlinux"));
    CHECK(pvh.exit_code != 0);
    CHECK(pvh.output.find("PVH") != std::string::npos);
    // A wrong CRC makes the probe fail, and strata passes its exit value through.
    auto bad = run(strata + " run --memory 256 --kernel " + probe_path("probe.bzImage") + " --initrd " + initrd
        + " --cmdline 'initrd_size=12345 initrd_crc32=0x1'");
    CHECK(bad.exit_code == 1);
    std::filesystem::remove_all(dir);
}

TEST_CASE("QEMU microvm, as an outside check, boots probe-pvh.elf and probe.bzImage (real-mode setup) to a pass")
{
    if (std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
        MESSAGE("qemu-system-x86_64 is not installed; outside check skipped");
        return;
    }
    auto dir = test::make_temp_dir("probe-qemu");
    std::string initrd = (dir / "initrd").string();
    std::string words = write_initrd(initrd, 23456);
    for (char const* probe : { "probe-pvh.elf", "probe.bzImage" }) {
        CAPTURE(probe);
        auto c = run("timeout 120 qemu-system-x86_64 -M microvm -enable-kvm -cpu max,-arch-capabilities -m 256 "
                     "-nodefaults -no-user-config -display none -serial stdio "
                     "-device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "
            + probe_path(probe) + " -initrd " + initrd + " -append '" + words + "'");
        INFO(c.output);
        CHECK(c.exit_code == 1); // isa-debug-exit: (0 << 1) | 1
        CHECK(c.output.find("all checks passed") != std::string::npos);
    }
    std::filesystem::remove_all(dir);
}
