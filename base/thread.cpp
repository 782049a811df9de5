#include "base/thread.h"

#include <csignal>
#include <pthread.h>
#include <sys/prctl.h>
#include <utility>

namespace strata {

namespace {

// Written once, on the main thread (enable_seccomp); start_thread reads it on
// the main thread, or on threads started after the write.
ThreadLauncher& launcher()
{
    static ThreadLauncher instance;
    return instance;
}

} // namespace

char const* thread_kind_name(ThreadKind kind)
{
    switch (kind) {
    case ThreadKind::Vmm: return "vmm";
    case ThreadKind::ApiIo: return "api";
    case ThreadKind::ApiWorker: return "api-worker";
    case ThreadKind::Vcpu: return "vcpu";
    case ThreadKind::DeviceIo: return "device-io";
    case ThreadKind::Fetcher: return "fetcher";
    }
    return "?";
}

void name_this_thread(char const* name)
{
    ::prctl(PR_SET_NAME, name, 0, 0, 0);
}

std::thread start_thread(ThreadKind kind, std::string name, std::function<void()> fn)
{
    if (launcher())
        return launcher()(kind, std::move(name), std::move(fn));
    return std::thread([name = std::move(name), fn = std::move(fn)] {
        name_this_thread(name.c_str());
        fn();
    });
}

std::thread start_thread_signals_blocked(ThreadKind kind, std::string name, std::function<void()> fn)
{
    sigset_t all, before;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &before);
    std::thread thread;
    try {
        thread = start_thread(kind, std::move(name), std::move(fn));
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &before, nullptr);
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    return thread;
}

void set_thread_launcher(ThreadLauncher l)
{
    launcher() = std::move(l);
}

} // namespace strata
