// strata-agent as PID 1 of the initramfs: mounts /proc, /sys and /dev, loads the
// kernel modules the initramfs carries (the order build-initramfs resolved, in
// /lib/modules/load-order, each with finit_module(2)), mounts the root disk named
// by root= (rootfstype=, default ext4; ro/rw), provisions it on first boot from
// strata.meta= (provision.h) or, without it, from the metadata service
// (mmds_client.h: strata.mmds=ADDR, or a quick try of 169.254.169.254 when a
// network interface is there), which also sets the interface's address; moves the mounts over and switches root, signals
// boot-complete, and then either execs the root's init (init=, else /sbin/init)
// while a child serves the VMM channel, or, when the root has no init, stays PID 1
// itself: serving, reaping, never exiting.
//
// Boot-complete: the byte 123 written to I/O port 0x3f0 (Firecracker's boot-timer
// port and value), which the VMM timestamps; the same moment is printed on the
// console as "strata-agent: boot-complete".
// The channel: the character device named by strata.channel= (default
// /dev/hvc0, the first virtio-console port; the kernel console stays on ttyS0).
// Threading: a single-threaded process (plus the forked server).
#pragma once

#include <string>
#include <vector>

namespace strata::agent {

inline constexpr unsigned short kBootCompletePort = 0x3f0;
inline constexpr unsigned char kBootCompleteValue = 123;

// The value of key= on a command line, or fallback.
std::string cmdline_value(std::string const& cmdline, std::string const& key, std::string const& fallback = {});
bool cmdline_flag(std::string const& cmdline, std::string const& word);

// Reads the module list (one path per line, relative to dir) and loads each.
// Returns the names loaded; modules already present count as loaded.
std::vector<std::string> load_modules(std::string const& dir, std::string& log);

// Writes kBootCompleteValue to kBootCompletePort (ioperm first); false if denied.
bool signal_boot_complete();

// PID 1's whole life. Never returns.
[[noreturn]] void run_init();

// Serves the channel device forever, reopening it when it goes away.
[[noreturn]] void serve_channel_forever(std::string const& device, std::string const& instance_id);

} // namespace strata::agent
