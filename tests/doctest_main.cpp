// The doctest main shared by every test binary. Binaries labelled kvm are built
// with STRATA_NEEDS_KVM. Where the host's /dev/kvm cannot run guests, such a binary
// runs itself again through scripts/with-kvm, inside the emulated machine that the
// ctest run's fixture started (STRATA_KVM_SESSION, default <build>/kvm-machine), or
// in a machine of its own when none is running. It skips (STRATA_SKIP_CODE, which
// ctest reports as skipped) only when no such machine can be had, and says why;
// under CI=true that is a failure instead, since a kvm tier that skips proves
// nothing. Listing test cases always works and needs no KVM.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#ifdef STRATA_NEEDS_KVM
#    include <cerrno>
#    include <csignal>
#    include <cstdlib>
#    include <fcntl.h>
#    include <linux/kvm.h>
#    include <string>
#    include <sys/ioctl.h>
#    include <sys/prctl.h>
#    include <sys/wait.h>
#    include <vector>
#endif

#include <cstdio>
#include <cstring>
#include <unistd.h>

namespace {

// ctest runs each case as `--test-case=<name>`, and doctest_discover_tests cuts a
// name at ';' (a CMake list separator). Such a case then matched nothing, ran
// nothing and passed: 31 cases were silently never run that way. So a run asked
// for named cases that matched none fails, and says why.
unsigned g_cases_passing_filters = 0;

struct MatchCounter : doctest::IReporter {
    explicit MatchCounter(doctest::ContextOptions const&) { }
    void report_query(doctest::QueryData const&) override { }
    void test_run_start() override { }
    void test_run_end(doctest::TestRunStats const& stats) override { g_cases_passing_filters = stats.numTestCasesPassingFilters; }
    void test_case_start(doctest::TestCaseData const&) override { }
    void test_case_reenter(doctest::TestCaseData const&) override { }
    void test_case_end(doctest::CurrentTestCaseStats const&) override { }
    void test_case_exception(doctest::TestCaseException const&) override { }
    void subcase_start(doctest::SubcaseSignature const&) override { }
    void subcase_end() override { }
    void log_assert(doctest::AssertData const&) override { }
    void log_message(doctest::MessageData const&) override { }
    void test_case_skipped(doctest::TestCaseData const&) override { }
};

REGISTER_LISTENER("strata_match_counter", 1, MatchCounter);

bool names_cases(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--test-case=", 12) == 0 || std::strncmp(argv[i], "-tc=", 4) == 0)
            return true;
    return false;
}

}

#ifdef STRATA_NEEDS_KVM
namespace {

// Exit status of scripts/with-kvm when the emulated machine could not be had.
constexpr int with_kvm_machine_failed = 125;

bool env_is(char const* name, char const* value)
{
    char const* v = std::getenv(name);
    return v != nullptr && std::strcmp(v, value) == 0;
}

// A node that opens is not enough: a kernel that is itself a guest may expose one
// that cannot create VMs.
bool kvm_usable()
{
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = ::ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
    if (ok) {
        int vm = ::ioctl(fd, KVM_CREATE_VM, 0);
        ok = vm >= 0;
        if (ok)
            ::close(vm);
    }
    ::close(fd);
    return ok;
}

int not_run(char const* why)
{
    if (env_is("CI", "true")) {
        std::printf("FAIL: %s; under CI=true a kvm test must run, not skip\n", why);
        return 1;
    }
    std::printf("SKIP: %s\n", why);
    return STRATA_SKIP_CODE;
}

// Runs this binary with the same arguments through scripts/with-kvm and returns its
// status. with-kvm dies with this process (ctest's time limit kills the test), and
// then ends the command it started inside the machine.
int run_through_with_kvm(int argc, char** argv)
{
    char const* session = std::getenv("STRATA_KVM_SESSION");
    std::string session_dir = session != nullptr ? session : STRATA_BUILD_DIR "/kvm-machine";
    std::string script = STRATA_SOURCE_DIR "/scripts/with-kvm";
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return not_run("cannot name this test binary to run it through scripts/with-kvm");
    self[n] = '\0';
    // --rerun-lost: a test whose emulated machine hung under it (the machine's
    // kernel, not the test) runs once more from the start in the next machine.
    std::vector<char*> args { script.data(), const_cast<char*>("--quiet"), const_cast<char*>("--rerun-lost"),
        const_cast<char*>("--session"), session_dir.data(), const_cast<char*>("--"), self };
    for (int i = 1; i < argc; ++i)
        args.push_back(argv[i]);
    args.push_back(nullptr);
    std::fflush(stdout);
    pid_t child = ::fork();
    if (child < 0)
        return not_run("fork failed");
    if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        ::execv(script.c_str(), args.data());
        std::fprintf(stderr, "cannot run %s: %s\n", script.c_str(), std::strerror(errno));
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) { }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    int code = WEXITSTATUS(status);
    if (code == with_kvm_machine_failed)
        return not_run("no usable /dev/kvm here and the emulated machine could not be had (scripts/with-kvm said why above)");
    return code;
}

}
#endif

int main(int argc, char** argv)
{
#ifdef STRATA_NEEDS_KVM
    bool listing = false;
    for (int i = 1; i < argc; ++i)
        listing = listing || std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-ltc", 4) == 0;
    if (!listing) {
        if (env_is("STRATA_IN_KVM_BOX", "1")) {
            if (!kvm_usable())
                return not_run("inside the emulated machine, /dev/kvm does not work");
        } else if (!kvm_usable() || env_is("STRATA_WITH_KVM", "emulated")) {
            return run_through_with_kvm(argc, argv);
        }
    }
#endif
    doctest::Context context(argc, argv);
    int result = context.run();
    if (result == 0 && !context.shouldExit() && names_cases(argc, argv) && g_cases_passing_filters == 0) {
        std::printf("FAIL: no test case matched the --test-case filter, so nothing ran (a case name with ';' or "
                    "another character ctest cuts or doctest reads as a pattern cannot be run by name)\n");
        return 1;
    }
    return result;
}
