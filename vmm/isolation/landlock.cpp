// Landlock (landlock.h), through its three system calls (glibc has no wrappers).
#include "vmm/isolation/landlock.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace strata {

namespace {

// The uapi's numbers, written here because the build host's headers may be
// older than the kernel the VMM runs on (Debian 12's know ABI 2).
constexpr std::uint64_t kExecute = 1ull << 0;
constexpr std::uint64_t kWriteFile = 1ull << 1;
constexpr std::uint64_t kReadFile = 1ull << 2;
constexpr std::uint64_t kReadDir = 1ull << 3;
constexpr std::uint64_t kRemoveDir = 1ull << 4;
constexpr std::uint64_t kRemoveFile = 1ull << 5;
constexpr std::uint64_t kMakeChar = 1ull << 6;
constexpr std::uint64_t kMakeDir = 1ull << 7;
constexpr std::uint64_t kMakeReg = 1ull << 8;
constexpr std::uint64_t kMakeSock = 1ull << 9;
constexpr std::uint64_t kMakeFifo = 1ull << 10;
constexpr std::uint64_t kMakeBlock = 1ull << 11;
constexpr std::uint64_t kMakeSym = 1ull << 12;
constexpr std::uint64_t kRefer = 1ull << 13;    // ABI 2
constexpr std::uint64_t kTruncate = 1ull << 14; // ABI 3
constexpr std::uint64_t kIoctlDev = 1ull << 15; // ABI 5
constexpr std::uint64_t kScopeAbstractUnix = 1ull << 0; // ABI 6
constexpr std::uint64_t kScopeSignal = 1ull << 1;       // ABI 6
constexpr unsigned kCreateRulesetVersion = 1u << 0;
constexpr int kRulePathBeneath = 1;

// landlock_ruleset_attr as of ABI 6; the size passed says how much of it the
// kernel reads (8 bytes before ABI 4, 16 before ABI 6).
struct RulesetAttr {
    std::uint64_t handled_access_fs;
    std::uint64_t handled_access_net;
    std::uint64_t scoped;
};

struct __attribute__((packed)) PathBeneathAttr {
    std::uint64_t allowed_access;
    std::int32_t parent_fd;
};

long create_ruleset(RulesetAttr const* attr, std::size_t size, unsigned flags)
{
    return ::syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

std::uint64_t handled_for(int abi)
{
    std::uint64_t fs = kExecute | kWriteFile | kReadFile | kReadDir | kRemoveDir | kRemoveFile | kMakeChar | kMakeDir | kMakeReg | kMakeSock
        | kMakeFifo | kMakeBlock | kMakeSym;
    if (abi >= 2)
        fs |= kRefer;
    if (abi >= 3)
        fs |= kTruncate;
    if (abi >= 5)
        fs |= kIoctlDev;
    return fs;
}

// What a bound path may be used for, by kind: a file's rights only on a file
// (the kernel refuses directory rights there).
std::uint64_t allowed_for(struct stat const& st, bool writable, std::uint64_t handled)
{
    std::uint64_t allowed = 0;
    if (S_ISDIR(st.st_mode)) {
        allowed = kReadFile | kReadDir;
        if (writable)
            allowed |= kWriteFile | kTruncate | kRemoveDir | kRemoveFile | kMakeDir | kMakeReg | kMakeSock | kRefer;
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        allowed = kReadFile | (writable ? kWriteFile | kIoctlDev : 0);
    } else {
        allowed = kReadFile | (writable ? kWriteFile | kTruncate : 0);
    }
    return allowed & handled;
}

} // namespace

int landlock_abi()
{
    long const abi = create_ruleset(nullptr, 0, kCreateRulesetVersion);
    return abi < 0 ? 0 : static_cast<int>(abi);
}

Result<LandlockResult> landlock_restrict_to(std::vector<LandlockPath> const& paths)
{
    LandlockResult result;
    long const abi = create_ruleset(nullptr, 0, kCreateRulesetVersion);
    if (abi < 0) {
        result.why_not = errno == ENOSYS ? "the kernel has no Landlock system calls"
            : errno == EOPNOTSUPP        ? "Landlock is built in but not enabled (lsm= on the kernel command line)"
                                         : std::string("landlock_create_ruleset: ") + std::strerror(errno);
        return result;
    }
    result.abi = static_cast<int>(abi);
    RulesetAttr attr {};
    attr.handled_access_fs = handled_for(result.abi);
    std::size_t size = sizeof attr.handled_access_fs;
    if (result.abi >= 6) {
        attr.scoped = kScopeAbstractUnix | kScopeSignal;
        size = sizeof attr;
    }
    long const ruleset = create_ruleset(&attr, size, 0);
    if (ruleset < 0)
        return errno_error("jail: landlock_create_ruleset");
    int const ruleset_fd = static_cast<int>(ruleset);
    auto fail = [&](std::string const& what) {
        int const err = errno;
        ::close(ruleset_fd);
        errno = err;
        return errno_error(what);
    };
    for (auto const& p : paths) {
        int fd = ::open(p.path.c_str(), O_PATH | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            return fail("jail: Landlock: open " + p.path);
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            ::close(fd);
            return fail("jail: Landlock: stat " + p.path);
        }
        PathBeneathAttr rule { allowed_for(st, p.writable, attr.handled_access_fs), fd };
        long const added = ::syscall(SYS_landlock_add_rule, ruleset_fd, kRulePathBeneath, &rule, 0);
        int const err = errno;
        ::close(fd);
        if (added != 0) {
            errno = err;
            return fail("jail: Landlock: rule for " + p.path);
        }
    }
    if (::syscall(SYS_landlock_restrict_self, ruleset_fd, 0) != 0)
        return fail("jail: landlock_restrict_self");
    ::close(ruleset_fd);
    return result;
}

} // namespace strata
