// The mapping from an Error's kind to the sysexits.h code that strata's CLI exits
// with. The README lists these codes; keep the two in step.
// Threading: pure functions.
#pragma once

#include "base/result.h"

#include <sysexits.h>

namespace strata {

[[nodiscard]] constexpr int exit_code_for(ErrorKind kind)
{
    switch (kind) {
    case ErrorKind::Usage: return EX_USAGE;             // 64
    case ErrorKind::BadInput: return EX_DATAERR;        // 65
    case ErrorKind::NotFound: return EX_NOINPUT;        // 66
    case ErrorKind::Unavailable: return EX_UNAVAILABLE; // 69
    case ErrorKind::Internal: return EX_SOFTWARE;       // 70
    case ErrorKind::Guest: return EX_OSERR;             // 71: the guest failed fatally
    case ErrorKind::NoSpace: return EX_CANTCREAT;       // 73
    case ErrorKind::Io: return EX_IOERR;                // 74
    case ErrorKind::Busy: return EX_TEMPFAIL;           // 75
    case ErrorKind::Timeout: return EX_TEMPFAIL;        // 75: try again later
    case ErrorKind::Permission: return EX_NOPERM;       // 77
    case ErrorKind::Exists: return EX_CANTCREAT;        // 73
    case ErrorKind::Unsupported: return EX_CONFIG;      // 78
    }
    return EX_SOFTWARE;
}

} // namespace strata
