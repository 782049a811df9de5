// libcurl, loaded when the registry client first uses it rather than when strata
// starts. Every strata process is the same binary, VMMs included; linked as a
// shared library, libcurl brought some thirty more (GnuTLS, Kerberos, LDAP,
// libssh2, ...) into each VMM, whose loading, relocation and constructors took
// about 3 s of a 6 s Linux boot to the first kernel message inside the emulated
// KVM machine (strace of `strata run`, bench/linux-boot). Here the ten functions
// the client calls are defined with libcurl's own signatures and forward to
// libcurl.so.4, opened with dlopen on the first call; the client's code and
// curl's headers are unchanged. If the library cannot be loaded, the reason is
// printed once and the calls fail as libcurl's do (CURLE_FAILED_INIT, a null
// handle), which the client reports.
// Threading: the library is opened once (std::call_once); the forwarded calls
// have libcurl's own threading rules.
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include <cstdarg>
#include <cstdio>
#include <dlfcn.h>
#include <mutex>

namespace {

struct Curl {
    CURLcode (*global_init)(long);
    CURL* (*easy_init)();
    CURLcode (*easy_setopt)(CURL*, CURLoption, ...);
    CURLcode (*easy_perform)(CURL*);
    void (*easy_cleanup)(CURL*);
    void (*easy_reset)(CURL*);
    CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...);
    char const* (*easy_strerror)(CURLcode);
    curl_slist* (*slist_append)(curl_slist*, char const*);
    void (*slist_free_all)(curl_slist*);
};

template<typename F>
bool bind(void* lib, char const* name, F& fn)
{
    // SAFETY: dlsym returns the address of the named function of libcurl, whose
    // type is F (curl.h declares it so); POSIX allows the conversion.
    fn = reinterpret_cast<F>(::dlsym(lib, name));
    return fn != nullptr;
}

Curl const* curl()
{
    static Curl api {};
    static bool loaded = false;
    static std::once_flag once;
    std::call_once(once, [] {
        void* lib = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            char const* why = ::dlerror();
            std::fprintf(stderr, "strata: cannot load libcurl (the libcurl4 package): %s\n", why ? why : "unknown error");
            return;
        }
        loaded = bind(lib, "curl_global_init", api.global_init) && bind(lib, "curl_easy_init", api.easy_init)
            && bind(lib, "curl_easy_setopt", api.easy_setopt) && bind(lib, "curl_easy_perform", api.easy_perform)
            && bind(lib, "curl_easy_cleanup", api.easy_cleanup) && bind(lib, "curl_easy_reset", api.easy_reset)
            && bind(lib, "curl_easy_getinfo", api.easy_getinfo) && bind(lib, "curl_easy_strerror", api.easy_strerror)
            && bind(lib, "curl_slist_append", api.slist_append) && bind(lib, "curl_slist_free_all", api.slist_free_all);
        if (!loaded)
            std::fprintf(stderr, "strata: libcurl.so.4 lacks a function strata uses\n");
    });
    return loaded ? &api : nullptr;
}

} // namespace

extern "C" {

CURLcode curl_global_init(long flags)
{
    auto const* c = curl();
    return c ? c->global_init(flags) : CURLE_FAILED_INIT;
}

CURL* curl_easy_init(void)
{
    auto const* c = curl();
    return c ? c->easy_init() : nullptr;
}

// The variadic argument's type follows from the option's number (curl.h,
// CURLOPTTYPE_*), as libcurl itself reads it: long, an object or function
// pointer, curl_off_t, or a struct curl_blob pointer.
CURLcode curl_easy_setopt(CURL* handle, CURLoption option, ...)
{
    auto const* c = curl();
    if (!c)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, option);
    CURLcode r;
    int const kind = static_cast<int>(option) / 10000 * 10000;
    if (kind == CURLOPTTYPE_LONG)
        r = c->easy_setopt(handle, option, va_arg(ap, long));
    else if (kind == CURLOPTTYPE_OFF_T)
        r = c->easy_setopt(handle, option, va_arg(ap, curl_off_t));
    else if (kind == CURLOPTTYPE_FUNCTIONPOINT)
        r = c->easy_setopt(handle, option, va_arg(ap, void (*)()));
    else
        r = c->easy_setopt(handle, option, va_arg(ap, void*));
    va_end(ap);
    return r;
}

CURLcode curl_easy_perform(CURL* handle)
{
    auto const* c = curl();
    return c ? c->easy_perform(handle) : CURLE_FAILED_INIT;
}

void curl_easy_cleanup(CURL* handle)
{
    if (auto const* c = curl())
        c->easy_cleanup(handle);
}

void curl_easy_reset(CURL* handle)
{
    if (auto const* c = curl())
        c->easy_reset(handle);
}

// Every CURLINFO_* takes one pointer to where the value goes.
CURLcode curl_easy_getinfo(CURL* handle, CURLINFO info, ...)
{
    auto const* c = curl();
    if (!c)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, info);
    CURLcode r = c->easy_getinfo(handle, info, va_arg(ap, void*));
    va_end(ap);
    return r;
}

char const* curl_easy_strerror(CURLcode code)
{
    auto const* c = curl();
    return c ? c->easy_strerror(code) : "libcurl could not be loaded";
}

curl_slist* curl_slist_append(curl_slist* list, char const* s)
{
    auto const* c = curl();
    return c ? c->slist_append(list, s) : nullptr;
}

void curl_slist_free_all(curl_slist* list)
{
    if (auto const* c = curl())
        c->slist_free_all(list);
}

} // extern "C"
