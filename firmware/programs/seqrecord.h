/* The seqwriter record: one 4 KiB block per round per disk. The layout is a
 * contract with the host-side checker (tests/tools/seqcheck.cpp, which defines
 * it again on its own: firmware shares no code with the host) and is documented
 * in firmware/README.md. All fields little-endian.
 *
 *   offset  size  field
 *   0       8     magic "STSEQWR1" (0x3152575145535453)
 *   8       4     disk index (the order the guest found its writable disks)
 *   12      4     layout version, 1
 *   16      8     round number
 *   24      8     checksum: FNV-1a 64 over bytes 0..23
 *   32   4048     zero
 *   4080    8     round number again (a torn write shows as a mismatch)
 *   4088    8     magic again
 *
 * Round r goes to block (r mod N), byte offset (r mod N) * 4096, N = `blocks=`. */
#pragma once

#include <stdint.h>

#define SEQ_MAGIC 0x3152575145535453ull
#define SEQ_VERSION 1u
#define SEQ_BLOCK 4096u

struct seq_record_head {
    uint64_t magic;
    uint32_t disk;
    uint32_t version;
    uint64_t round;
    uint64_t checksum;
};

struct seq_record_tail {
    uint64_t round;
    uint64_t magic;
};

static inline uint64_t seq_checksum(const struct seq_record_head* h)
{
    const uint8_t* p = (const uint8_t*)h;
    uint64_t x = 0xcbf29ce484222325ull;
    for (int i = 0; i < 24; ++i) {
        x ^= p[i];
        x *= 0x100000001b3ull;
    }
    return x;
}
