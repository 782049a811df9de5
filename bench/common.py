"""Shared helpers for strata's bench/ scripts: locate or build the tree, time
commands, and print RESULT lines in the format DEVELOPERS.md fixes:
RESULT <name> <value> <unit> goal <op> <target> met|short"""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("STRATA_BUILD_DIR", os.path.join(ROOT, "build"))


def ensure_built(targets):
    """Builds the given CMake targets into BUILD (configuring it if needed). If the
    build fails but an earlier build left the outputs, says so and goes on."""
    if os.environ.get("STRATA_BENCH_BUILT") == "1":
        return
    if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=subprocess.DEVNULL)
    proc = subprocess.run(["cmake", "--build", BUILD, "-j", str(os.cpu_count() or 2), "--target", *targets],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        if os.path.exists(os.path.join(BUILD, "strata")):
            note("build failed; measuring the binaries an earlier build left in " + BUILD)
        else:
            fail("build failed:\n" + proc.stderr.decode(errors="replace")[-2000:])


WITH_KVM = os.path.join(ROOT, "scripts", "with-kvm")
QUICK = os.environ.get("STRATA_BENCH_QUICK") == "1"


def kvm_usable():
    """The same test scripts/with-kvm makes: /dev/kvm opens and creates a VM."""
    import fcntl
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, 0xAE00, 0) != 12:  # KVM_GET_API_VERSION
            return False
        os.close(fcntl.ioctl(fd, 0xAE01, 0))  # KVM_CREATE_VM
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def hardware_virtualization():
    """The CPU shows vmx or svm (scripts/with-kvm --full's test)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return "vmx" in flags or "svm" in flags
    return False


def require_kvm(targets, full=False, prepare=None):
    """Builds targets on the host, then makes sure the rest of the script runs where
    /dev/kvm works (full: where it runs Linux too, see scripts/with-kvm --full): here when the host's does, otherwise the script runs itself again
    inside scripts/with-kvm's emulated machine (building there would be emulated too,
    so it is done first). Prints where the figures come from; inside the emulated
    machine only ratios between runs of the same script mean anything. prepare, when
    given, runs on the host after the build: inputs made there (an initramfs, a root
    file system) are found ready inside the machine, where every fork is emulated and
    making them took longer than the benchmark's own time limit."""
    if os.environ.get("STRATA_IN_KVM_BOX") == "1":
        note("ran inside the emulated KVM machine (QEMU TCG with nested KVM): compare ratios only")
        return
    ensure_built(targets)
    if prepare:
        prepare()
    if kvm_usable() and os.environ.get("STRATA_WITH_KVM") != "emulated" and (hardware_virtualization() or not full):
        note("ran on host KVM")
        return
    note("no usable /dev/kvm on this host%s: running inside scripts/with-kvm's emulated machine" %
         (" for full operating systems (no vmx/svm)" if kvm_usable() else ""))
    sys.stdout.flush()
    env = dict(os.environ, STRATA_BENCH_BUILT="1")
    script = os.path.abspath(sys.argv[0])
    args = [WITH_KVM, "--quiet"] + (["--full"] if full else []) + ["--", sys.executable, script, *sys.argv[1:]]
    os.execve(WITH_KVM, args, env)


def timed(argv, **kwargs):
    """Runs argv and returns (seconds, CompletedProcess)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    return time.perf_counter() - start, proc


def median(values):
    return statistics.median(values)


def result(name, value, unit, op, target):
    ok = {"<=": value <= target, "<": value < target, ">=": value >= target, ">": value > target}[op]
    print(f"RESULT {name} {value:.3f} {unit} goal {op} {target} {'met' if ok else 'short'}", flush=True)


def note(message):
    print(f"# {message}", flush=True)


def fail(message):
    print(f"bench: could not measure: {message}", file=sys.stderr)
    sys.exit(1)
