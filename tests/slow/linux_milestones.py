"""Boots Debian's cloud kernel with strata-agent's initramfs under strata and under
QEMU microvm with the same kernel, initramfs, command line and CPU features, and
records when each boot milestone appears on the serial console.

Shared by the slow test (tests/slow/linux_boot_test) and the benchmark
(bench/linux-boot). Only processes started here are stopped here.
"""
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# In boot order; each is a regular expression searched in one console line.
MILESTONES = [
    ("linux_version", r"Linux version"),
    ("fpu", r"x86/fpu:"),
    ("memory", r"Memory:"),
    ("apic_symmetric_io", r"APIC: Switch to symmetric I/O mode"),
    ("run_init", r"Run /init"),
    ("boot_complete", r"strata-agent: boot-complete"),
]

# strata's `--cpu-template minimal` (vmm/kvm/cpu_template.h) spelled as QEMU CPU flags.
QEMU_MINIMAL_CPU = "max,-arch-capabilities," + ",".join("-" + f for f in [
    "cx16", "xsave", "xsaveopt", "xsavec", "xsaves", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512dq", "avx512ifma", "avx512pf", "avx512er", "avx512cd", "avx512bw",
    "avx512vl", "avx512vbmi", "avx512vbmi2", "avx512vnni", "avx512bitalg", "avx512-vp2intersect",
    "avx512-vpopcntdq", "avx512-4vnniw", "avx512-4fmaps", "avx512-bf16", "avx512-fp16",
    "amx-tile", "amx-int8", "amx-bf16", "avx-vnni", "pku", "vaes", "vpclmulqdq", "mpx",
    "xop", "fma4",
])

# The kernel gets noxsave as well (KVM-HERE.md: hiding the CPUID bit alone was not
# enough for QEMU), a serial console and reboot=k so a reset ends either VMM.
BASE_CMDLINE = "console=ttyS0 earlyprintk=serial reboot=k panic=-1 noxsave root=/dev/vda rw"


def log(msg):
    print(msg, flush=True)


ROOTFS_IMAGE = "slow-rootfs"


def strata_env(home):
    return dict(os.environ, STRATA_HOME=home)


def prepare(work, agent, strata):
    """Builds vmlinuz + initramfs (guest-tools/build-initramfs) and a small root
    file system: a directory turned into the store image ROOTFS_IMAGE by
    `strata images create-rootfs` (mke2fs -d under fakeroot; no mounts) in the
    store work/store. Boots get their own copies: strata a disk cloned from the
    image (fresh_strata_disk), QEMU the same bytes exported raw (fresh_qemu_rootfs).
    Returns a dict of paths and the store."""
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "guest")
    builder = os.path.join(SOURCE_DIR, "guest-tools", "build-initramfs")
    initramfs = os.path.join(out, "initramfs.cpio.gz")
    # Rebuilt when the agent or the script (its module list) changed.
    if not os.path.exists(initramfs) or os.path.getmtime(agent) > os.path.getmtime(initramfs) or \
            os.path.getmtime(builder) > os.path.getmtime(initramfs):
        # The default cache ($XDG_CACHE_HOME/strata/debian-kernel) is the one
        # scripts/with-kvm fills on the host before it starts its machine, which
        # has no network to fetch the kernel package with.
        subprocess.run([builder, "--agent", agent,
                        "--out", out], check=True)
    home = os.path.join(work, "store")
    env = strata_env(home)
    have = subprocess.run([strata, "images", "describe", ROOTFS_IMAGE], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if not have:
        rootdir = os.path.join(work, "rootfs-dir")
        shutil.rmtree(rootdir, ignore_errors=True)
        for d in ["bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "var/log", "var/lib", "root", "home"]:
            os.makedirs(os.path.join(rootdir, d), exist_ok=True)
        os.chmod(os.path.join(rootdir, "tmp"), 0o1777)
        shutil.copy(shutil.which("busybox"), os.path.join(rootdir, "bin", "busybox"))
        os.symlink("busybox", os.path.join(rootdir, "bin", "sh"))
        with open(os.path.join(rootdir, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
        with open(os.path.join(rootdir, "etc", "group"), "w") as f:
            f.write("root:x:0:\n")
        open(os.path.join(rootdir, "etc", "machine-id"), "w").close()
        # No /sbin/init: strata-agent stays PID 1 after switching root. Every file
        # is root's in the image whoever runs this (create-rootfs uses fakeroot).
        subprocess.run([strata, "images", "create-rootfs", ROOTFS_IMAGE, "--from-dir", rootdir], env=env, check=True)
    return {"kernel": os.path.join(out, "vmlinuz"), "initrd": os.path.join(out, "initramfs.cpio.gz"),
            "store": home, "image": ROOTFS_IMAGE}


def fresh_strata_disk(strata, art, disk):
    """A new store disk named disk, an O(1) clone of the root file system image
    (the guest mounts it rw, so each boot gets its own). Returns its name."""
    env = strata_env(art["store"])
    subprocess.run([strata, "disks", "delete", disk], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([strata, "disks", "create", disk, "--image", art["image"]], env=env, check=True)
    return disk


def fresh_qemu_rootfs(strata, art, path):
    """The root file system image's bytes as a raw file for QEMU (a new copy each
    boot, since the guest writes to it). Returns path."""
    subprocess.run([strata, "images", "export", art["image"], path, "-O", "raw"], env=strata_env(art["store"]), check=True)
    return path


def extract_vmlinux(bzimage, dest):
    """Decompresses a bzImage's payload (for QEMU's PVH boot of the same kernel)."""
    if os.path.exists(dest):
        return dest
    data = open(bzimage, "rb").read()
    setup_sects = data[0x1f1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = data[start:start + payload_length - 4]  # without the size trailer
    tools = [(b"\x02\x21\x4c\x18", ["lz4", "-dc"]), (b"\x1f\x8b", ["gzip", "-dc"]), (b"\xfd7zXZ", ["xz", "-dc"]),
             (b"\x28\xb5\x2f\xfd", ["zstd", "-dc"]), (b"BZh", ["bzip2", "-dc"]), (b"\x5d\x00\x00", ["xz", "-dc", "--format=lzma"]),
             (b"\x89LZO", ["busybox", "lzop", "-dc"])]
    for magic, cmd in tools:
        if payload.startswith(magic):
            r = subprocess.run(cmd, input=payload, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if not r.stdout.startswith(b"\x7fELF"):
                raise RuntimeError("decompressing the payload with %s failed" % cmd[0])
            with open(dest, "wb") as f:
                f.write(r.stdout)
            return dest
    raise RuntimeError("unknown payload format in " + bzimage)


def watch(cmd, timeout, label, console_log=None):
    """Runs cmd, reading its merged stdout/stderr line by line; returns
    (milestone -> seconds since start, the process's exit code or None, tail)."""
    log("%s: %s" % (label, " ".join(cmd)))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reached = {}
    tail = []
    buf = b""
    out = open(console_log, "wb") if console_log else None
    stop_reason = "timeout"
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                break
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if not ready:
                if proc.poll() is not None:
                    stop_reason = "exited"
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                stop_reason = "exited"
                break
            if out:
                out.write(chunk)
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").rstrip("\r")
                now = time.monotonic() - start
                tail = (tail + [line])[-15:]
                for name, pattern in MILESTONES:
                    if name not in reached and re.search(pattern, line):
                        reached[name] = now
                        log("%s: %7.2f s  %s" % (label, now, name))
                if "internal error" in line or "emulation failure" in line:
                    stop_reason = "KVM emulation failure"
            if stop_reason != "timeout" or len(reached) == len(MILESTONES):
                if len(reached) == len(MILESTONES):
                    stop_reason = "all milestones"
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if out:
            out.close()
    log("%s: stopped (%s) after %.1f s; reached %d of %d milestones" %
        (label, stop_reason, time.monotonic() - start, len(reached), len(MILESTONES)))
    if stop_reason != "all milestones":
        log("%s: last console lines:\n  %s" % (label, "\n  ".join(tail[-8:])))
    return reached, proc.returncode, tail


def qemu_cmd(kernel, initrd, rootfs, cmdline, memory_mib=1024):
    return ["qemu-system-x86_64", "-M", "microvm", "-enable-kvm", "-cpu", QEMU_MINIMAL_CPU, "-m", str(memory_mib),
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-global", "virtio-mmio.force-legacy=false",
            "-drive", "file=%s,if=none,id=d0,format=raw,aio=io_uring,cache=none" % rootfs,
            "-device", "virtio-blk-device,drive=d0"]


def strata_cmd(strata, kernel, initrd, store, disk, cmdline, memory_mib=1024, extra=()):
    """strata run with the store disk disk (fresh_strata_disk) as /dev/vda; the
    store is passed through env(1) so the logged command line is complete."""
    return ["env", "STRATA_HOME=" + store, strata, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
            "--cpu-template", "minimal", "--memory", str(memory_mib), "--disk", disk] + list(extra)


def strata_kernel_support(strata, probe_kernel):
    """None when `strata run --kernel` works, else the reason it does not."""
    if not os.path.exists(probe_kernel):
        return "the probe kernel %s is not built" % probe_kernel
    r = subprocess.run([strata, "run", "--kernel", probe_kernel, "--memory", "128", "--cmdline", "console=ttyS0"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    text = r.stdout.decode("utf-8", "replace")
    if "not supported" in text or "not built" in text:
        return text.strip().splitlines()[-1]
    return None
