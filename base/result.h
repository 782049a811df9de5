// Errors as values for every strata module (STYLE.md point 3).
//
// Error carries a kind (which the CLI maps to a sysexits.h code and the API to an
// HTTP status), the errno it came from if any, and a sentence for the user.
// Result<T> is Boost.Outcome's result with the terminate policy: reading the value
// of a failed Result is a programming error and ends the process, never UB.
// Threading: plain values; no shared state.
#pragma once

#include <utility>

#include <boost/outcome.hpp>

#include <cerrno>
#include <cstring>
#include <string>

namespace strata {

enum class ErrorKind {
    Usage,       // the caller asked for something malformed (flag, argument, API field)
    BadInput,    // a file or request whose contents are wrong (not ELF, corrupt image)
    NotFound,    // a named file or object does not exist
    Exists,      // a name that must be new is taken
    Unavailable, // a service we need is missing (no /dev/kvm, no io_uring)
    Permission,  // the OS refused access
    Busy,        // locked by another process, or in use
    NoSpace,     // out of disk or memory
    Io,          // an I/O operation failed
    Unsupported, // a valid input that this version does not implement
    Guest,       // the guest did something fatal (triple fault)
    Timeout,     // a peer (the guest agent) did not answer in time
    Internal,    // a bug or an unexpected OS failure
};

struct Error {
    ErrorKind kind { ErrorKind::Internal };
    int err { 0 };
    std::string message;

    // Prefixes context, as in "open layer 'x': <message>".
    Error context(std::string const& what) const&
    {
        return Error { kind, err, what + ": " + message };
    }
};

[[nodiscard]] inline Error make_error(ErrorKind kind, std::string message)
{
    return Error { kind, 0, std::move(message) };
}

// An error from a failed system call; the errno value picks the kind.
[[nodiscard]] inline Error errno_error(std::string const& what, int err = errno)
{
    ErrorKind kind = ErrorKind::Io;
    switch (err) {
    case ENOENT: kind = ErrorKind::NotFound; break;
    case EEXIST: kind = ErrorKind::Exists; break;
    case EACCES:
    case EPERM: kind = ErrorKind::Permission; break;
    case EBUSY:
    case EAGAIN: kind = ErrorKind::Busy; break;
    case ENOSPC:
    case ENOMEM:
    case EDQUOT: kind = ErrorKind::NoSpace; break;
    case EINVAL: kind = ErrorKind::Internal; break;
    case ENOSYS:
    case EOPNOTSUPP: kind = ErrorKind::Unsupported; break;
    default: break;
    }
    return Error { kind, err, what + ": " + std::strerror(err) };
}

namespace outcome = boost::outcome_v2;

template<typename T>
using Result = outcome::result<T, Error, outcome::policy::terminate>;

// Result<void> spelled out, for functions that only succeed or fail.
using Status = Result<void>;

[[nodiscard]] inline auto ok() { return outcome::success(); }

} // namespace strata

// STRATA_TRY(expr) returns the error early on failure and is a single statement,
// so it is safe as the body of an unbraced if/for. STRATA_TRY(name, expr) also
// declares `auto&& name` bound to the value (Boost 1.74's Outcome form: no `auto`
// in the call); being a declaration, it needs braces around it in such bodies.
#define STRATA_TRY_1(expr)                           \
    do {                                             \
        auto&& strata_try_result_ = (expr);          \
        if (!strata_try_result_.has_value())         \
            return strata_try_result_.as_failure();  \
    } while (0)
#define STRATA_TRY_2(name, expr) BOOST_OUTCOME_TRYA(name, expr)
#define STRATA_TRY_PICK(a, b, macro, ...) macro
#define STRATA_TRY(...) STRATA_TRY_PICK(__VA_ARGS__, STRATA_TRY_2, STRATA_TRY_1, unused)(__VA_ARGS__)
