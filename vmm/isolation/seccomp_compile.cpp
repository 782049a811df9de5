// seccomp_compile, a build tool: writes the C++ source of seccomp_programs.h,
// every program of seccomp_rules.h's compiled_programs compiled by libseccomp
// into BPF in both modes (trap and log), as arrays of sock_filter.
// Usage: seccomp_compile OUTPUT.cpp
#include "vmm/isolation/seccomp_rules.h"

#include <linux/filter.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using strata::seccomp_rules::Program;

// The program's BPF as libseccomp exports it; empty with a message on failure.
std::vector<sock_filter> compile(Program program, bool log)
{
    auto ctx = strata::seccomp_rules::build_filter(program, log ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
    if (!ctx) {
        std::cerr << "seccomp_compile: " << ctx.error().message << "\n";
        return {};
    }
    std::vector<sock_filter> out;
    int fd = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (fd >= 0 && ::seccomp_export_bpf(ctx.value(), fd) == 0 && ::lseek(fd, 0, SEEK_SET) == 0) {
        sock_filter insn {};
        while (::read(fd, &insn, sizeof insn) == static_cast<ssize_t>(sizeof insn))
            out.push_back(insn);
    }
    if (out.empty())
        std::cerr << "seccomp_compile: could not export the " << strata::seccomp_rules::program_name(program) << " filter\n";
    if (fd >= 0)
        ::close(fd);
    ::seccomp_release(ctx.value());
    return out;
}

std::string array_name(Program program, bool log)
{
    std::string name = strata::seccomp_rules::program_name(program);
    for (char& c : name)
        if (c == '-')
            c = '_';
    return name + (log ? "_log" : "_trap");
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::cerr << "usage: seccomp_compile OUTPUT.cpp\n";
        return 64;
    }
    std::ostringstream src;
    src << "// Written by seccomp_compile (vmm/isolation/seccomp_compile.cpp) at build time.\n"
        << "#include \"vmm/isolation/seccomp_programs.h\"\n\nnamespace strata {\n\nnamespace {\n\n";
    for (Program program : strata::seccomp_rules::compiled_programs) {
        for (bool log : { false, true }) {
            auto bpf = compile(program, log);
            if (bpf.empty())
                return 1;
            src << "constexpr sock_filter " << array_name(program, log) << "[] = {\n";
            for (auto const& insn : bpf) {
                char line[96];
                std::snprintf(line, sizeof line, "    { 0x%04x, %u, %u, 0x%08x },\n", insn.code, insn.jt, insn.jf, insn.k);
                src << line;
            }
            src << "};\n";
        }
    }
    src << "\n} // namespace\n\nstd::span<sock_filter const> compiled_seccomp_program(seccomp_rules::Program program, bool log)\n{\n"
        << "    using P = seccomp_rules::Program;\n    switch (program) {\n";
    for (Program program : strata::seccomp_rules::compiled_programs) {
        // The enumerator by its value: the generated source needs no second list of
        // the programs' names.
        src << "    case static_cast<P>(" << static_cast<int>(program) << "): return log ? std::span<sock_filter const>("
            << array_name(program, true) << ") : std::span<sock_filter const>(" << array_name(program, false) << ");\n";
    }
    src << "    default: return {};\n    }\n}\n\n} // namespace strata\n";
    // Written whole under another name first: a build stopped midway leaves no
    // half-written source behind that make would take as up to date.
    std::string const target = argv[1];
    std::string const partial = target + ".partial";
    {
        std::ofstream out(partial, std::ios::trunc);
        out << src.str();
        if (!out)
            return 1;
    }
    return std::rename(partial.c_str(), target.c_str()) == 0 ? 0 : 1;
}
