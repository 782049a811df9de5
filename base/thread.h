// Named threads of a kind, started through one process-wide launcher. Every
// long-lived thread of the VMM says what kind of thread it is, so that a VMM that
// filters its threads' system calls (vmm/isolation/seccomp.h) can give each kind
// its own filter before the thread runs any of its code. The launcher is the
// place where that happens: by default start_thread creates the thread directly
// and only names it; the VMM may install another launcher once, before starting
// any thread, for the rest of the process's life.
// Threading: start_thread from any thread; set_thread_launcher once, before any
// start_thread, on the main thread.
#pragma once

#include <functional>
#include <string>
#include <thread>

namespace strata {

enum class ThreadKind {
    Vmm,       // the main thread's helpers (signal watcher); the VM's owner
    ApiIo,     // the REST API's socket thread: client bytes, nothing else
    ApiWorker, // the REST API's worker: configuration, captures, snapshots
    Vcpu,      // one vCPU's KVM_RUN loop and the device exits it handles
    DeviceIo,  // a device's I/O thread (virtio-blk, virtio-net, virtio-console, serial input, console relay)
    Fetcher,   // a lazily pulled disk's fetcher: registry requests over the network, chunks into layer files
};

char const* thread_kind_name(ThreadKind kind);

using ThreadLauncher = std::function<std::thread(ThreadKind, std::string name, std::function<void()>)>;

// Starts fn on a new thread named `name` (at most 15 characters show in
// /proc/PID/task/TID/comm).
std::thread start_thread(ThreadKind kind, std::string name, std::function<void()> fn);

// Starts fn as start_thread does, on a thread with every signal blocked (a
// thread inherits the mask of the thread that starts it, through a launcher
// too): for a helper that must never take a signal meant for the process, such
// as SIGTERM and SIGINT, which the VMM's main thread reads from a signalfd, or
// the signals the jail's supervisor waits for with sigwaitinfo. The caller's
// own mask is as it was when this returns. Throws std::system_error as
// std::thread does.
std::thread start_thread_signals_blocked(ThreadKind kind, std::string name, std::function<void()> fn);

// Makes every later start_thread go through `launcher`.
void set_thread_launcher(ThreadLauncher launcher);

// Names the calling thread (prctl PR_SET_NAME).
void name_this_thread(char const* name);

} // namespace strata
