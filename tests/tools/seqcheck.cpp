// seqcheck: the host-side checker for the firmware seqwriter workload. It reads
// raw disk images (files or block devices) and passes when they could have been
// captured at one instant from a VM running seqwriter: every disk's highest round
// is within 1 of every other disk's, and each disk still holds its N-1 previous
// records intact. Plain C++ with no strata libraries, so that it checks strata's
// output independently. The record layout is documented in firmware/README.md and
// firmware/programs/seqrecord.h; it is restated here on purpose.
//
// Usage: seqcheck [--blocks N] [--same-round] [--min-round R] DISK...   (N as
// seqwriter's blocks=, default 64). --same-round asks more: every disk's highest
// round is the same, as in a capture taken while the guest agent held seqwriter
// between rounds. --min-round R asks that every disk's highest round is at least
// R: all-zero disks are consistent by design, so a test that means to check a
// capture of a busy guest says how far the guest had got before the capture.
// Exit: 0 consistent, 1 inconsistent (with the reasons on stdout), 2 usage or I/O.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr uint64_t seq_magic = 0x3152575145535453ull; // "STSEQWR1"
constexpr uint32_t seq_version = 1;
constexpr size_t block_size = 4096;

uint64_t le64(unsigned char const* p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i)
        v = v << 8 | p[i];
    return v;
}

uint32_t le32(unsigned char const* p)
{
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16
        | static_cast<uint32_t>(p[3]) << 24;
}

uint64_t fnv1a(unsigned char const* p, size_t n)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        x ^= p[i];
        x *= 0x100000001b3ull;
    }
    return x;
}

struct Record {
    uint32_t disk;
    uint64_t round;
};

// Classifies one block: nullopt with empty `why` = never written (all zero);
// nullopt with `why` = damaged; otherwise the record.
std::optional<Record> parse_block(unsigned char const* b, std::string& why)
{
    why.clear();
    bool zero = true;
    for (size_t i = 0; i < block_size && zero; ++i)
        zero = b[i] == 0;
    if (zero)
        return std::nullopt;
    if (le64(b) != seq_magic) {
        why = "bad magic";
        return std::nullopt;
    }
    if (le32(b + 12) != seq_version) {
        why = "unknown layout version " + std::to_string(le32(b + 12));
        return std::nullopt;
    }
    if (fnv1a(b, 24) != le64(b + 24)) {
        why = "bad checksum";
        return std::nullopt;
    }
    uint64_t round = le64(b + 16);
    if (le64(b + block_size - 16) != round || le64(b + block_size - 8) != seq_magic) {
        why = "torn record (trailer does not match header round " + std::to_string(round) + ")";
        return std::nullopt;
    }
    for (size_t i = 32; i < block_size - 16; ++i) {
        if (b[i] != 0) {
            why = "non-zero filler at byte " + std::to_string(i);
            return std::nullopt;
        }
    }
    return Record { le32(b + 8), round };
}

struct DiskState {
    std::string path;
    std::optional<uint64_t> highest;
    std::optional<uint32_t> index;
    std::vector<std::optional<uint64_t>> slots; // the round held by each block
    std::vector<std::string> problems;
};

bool load(std::string const& path, uint64_t blocks, DiskState& d)
{
    d.path = path;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::cerr << "seqcheck: cannot open " << path << ": " << std::strerror(errno) << "\n";
        return false;
    }
    std::vector<unsigned char> data(blocks * block_size, 0);
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size())); // SAFETY: byte buffer
    if (static_cast<uint64_t>(in.gcount()) < data.size()) {
        std::cerr << "seqcheck: " << path << " is shorter than " << blocks << " blocks of 4 KiB\n";
        return false;
    }
    d.slots.assign(blocks, std::nullopt);
    for (uint64_t s = 0; s < blocks; ++s) {
        std::string why;
        auto rec = parse_block(data.data() + s * block_size, why);
        if (!why.empty()) {
            d.problems.push_back("block " + std::to_string(s) + ": " + why);
            continue;
        }
        if (!rec)
            continue;
        if (rec->round % blocks != s) {
            d.problems.push_back("block " + std::to_string(s) + " holds round " + std::to_string(rec->round)
                + ", which belongs in block " + std::to_string(rec->round % blocks));
            continue;
        }
        if (d.index && *d.index != rec->disk)
            d.problems.push_back("block " + std::to_string(s) + " names disk index " + std::to_string(rec->disk)
                + ", others name " + std::to_string(*d.index));
        d.index = rec->disk;
        d.slots[s] = rec->round;
        if (!d.highest || rec->round > *d.highest)
            d.highest = rec->round;
    }
    // Every round in (highest - N, highest] must be present in its block.
    if (d.highest) {
        uint64_t h = *d.highest;
        uint64_t first = h + 1 >= blocks ? h + 1 - blocks : 0;
        for (uint64_t r = first; r <= h; ++r) {
            auto const& slot = d.slots[r % blocks];
            if (!slot || *slot != r)
                d.problems.push_back("round " + std::to_string(r) + " (before the highest, " + std::to_string(h)
                    + ") is missing from block " + std::to_string(r % blocks)
                    + (slot ? ", which holds round " + std::to_string(*slot) : ", which is empty"));
        }
    }
    return true;
}

std::string round_text(std::optional<uint64_t> r)
{
    return r ? std::to_string(*r) : std::string("none");
}

} // namespace

int main(int argc, char** argv)
{
    uint64_t blocks = 64;
    bool same_round = false;
    std::optional<uint64_t> min_round;
    std::vector<std::string> paths;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--blocks" && i + 1 < argc) {
            blocks = std::strtoull(argv[++i], nullptr, 0);
        } else if (a == "--same-round") {
            same_round = true;
        } else if (a == "--min-round" && i + 1 < argc) {
            char* end = nullptr;
            min_round = std::strtoull(argv[++i], &end, 0);
            if (end == argv[i] || *end != '\0') {
                std::cerr << "seqcheck: --min-round needs a number, not '" << argv[i] << "'\n";
                return 2;
            }
        } else if (a == "-h" || a == "--help") {
            std::cout << "usage: seqcheck [--blocks N] [--same-round] [--min-round R] DISK...\n";
            return 0;
        } else if (!a.empty() && a[0] == '-') {
            std::cerr << "seqcheck: unknown option " << a << "\n";
            return 2;
        } else {
            paths.push_back(a);
        }
    }
    if (paths.empty() || blocks == 0) {
        std::cerr << "usage: seqcheck [--blocks N] [--same-round] [--min-round R] DISK...\n";
        return 2;
    }
    std::vector<DiskState> disks(paths.size());
    for (size_t i = 0; i < paths.size(); ++i)
        if (!load(paths[i], blocks, disks[i]))
            return 2;

    std::vector<std::string> problems;
    for (auto const& d : disks)
        for (auto const& p : d.problems)
            problems.push_back(d.path + ": " + p);
    // Highest rounds pairwise within 1; a disk with no record counts as round -1.
    auto as_signed = [](std::optional<uint64_t> r) { return r ? static_cast<long double>(*r) : -1.0L; };
    for (size_t i = 0; i < disks.size(); ++i) {
        for (size_t j = i + 1; j < disks.size(); ++j) {
            long double a = as_signed(disks[i].highest), b = as_signed(disks[j].highest);
            if (same_round && a != b)
                problems.push_back("highest rounds differ (--same-round): " + disks[i].path + " has "
                    + round_text(disks[i].highest) + ", " + disks[j].path + " has " + round_text(disks[j].highest));
            else if (a - b > 1 || b - a > 1)
                problems.push_back("highest rounds differ by more than 1: " + disks[i].path + " has "
                    + round_text(disks[i].highest) + ", " + disks[j].path + " has " + round_text(disks[j].highest));
            if (disks[i].index && disks[j].index && *disks[i].index == *disks[j].index)
                problems.push_back(disks[i].path + " and " + disks[j].path + " both carry disk index "
                    + std::to_string(*disks[i].index) + " (the same disk twice?)");
        }
    }
    if (min_round) {
        for (auto const& d : disks)
            if (!d.highest || *d.highest < *min_round)
                problems.push_back(d.path + ": highest round " + round_text(d.highest) + " is below --min-round "
                    + std::to_string(*min_round) + " (the guest had not written that far)");
    }
    for (auto const& d : disks)
        std::cout << "seqcheck: " << d.path << ": disk index " << (d.index ? std::to_string(*d.index) : "?")
                  << ", highest round " << round_text(d.highest) << "\n";
    if (!problems.empty()) {
        for (auto const& p : problems)
            std::cout << "seqcheck: FAIL: " << p << "\n";
        return 1;
    }
    std::cout << "seqcheck: OK\n";
    return 0;
}
