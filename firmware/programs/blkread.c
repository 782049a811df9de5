/* blkread: reads `count=` requests of `req_kb=` KiB (default 64 requests of 1024
 * KiB) spread evenly over disk `disk=` (default 0), `qd=` in flight (default 4),
 * and with `check=1` checks that every 4 KiB block at byte offset o starts with
 * the 16 bytes the host wrote there: o ^ BLKREAD_MAGIC, then its complement.
 * A read that fails is counted and reading goes on (the disk may be a lazily
 * pulled one whose registry went away: the guest must see an I/O error, never
 * wrong data, and keep running). Output:
 *   blkread: ok N requests (M MiB) in T ms, errors E
 * Exit 0; 7 if any read failed; 8 on wrong data (the offset is printed). */
#include "blk.h"
#include "io.h"
#include "runtime.h"

const char rt_program_name[] = "blkread";

#define MAX_QD 16
#define BLKREAD_MAGIC 0x424c4b5245414430ull

static struct blk_dev g_disks[BLK_MAX_DISKS];
static struct blk_req g_reqs[MAX_QD];
static uint64_t g_offset[MAX_QD];

static void check_block(const uint8_t* buf, uint64_t off, uint32_t len)
{
    for (uint32_t b = 0; b < len; b += 4096) {
        uint64_t o = off + b;
        const uint64_t* w = (const uint64_t*)(buf + b);
        if (w[0] != (o ^ BLKREAD_MAGIC) || w[1] != ~(o ^ BLKREAD_MAGIC))
            rt_fail(8, "wrong data at byte %lu: %lx %lx", (unsigned long)o, (unsigned long)w[0], (unsigned long)w[1]);
    }
}

int main(const char* cmdline)
{
    (void)cmdline;
    int n = blk_open_all(g_disks, BLK_MAX_DISKS);
    if (n == 0)
        rt_fail(2, "no virtio-blk disks found");
    uint64_t pick = cmdline_u64("disk", 0);
    if (pick >= (uint64_t)n)
        rt_fail(3, "disk=%lu but only %d disks", (unsigned long)pick, n);
    struct blk_dev* d = &g_disks[pick];
    uint64_t count = cmdline_u64("count", 64);
    uint32_t req_bytes = (uint32_t)(cmdline_u64("req_kb", 1024) << 10);
    uint32_t qd = (uint32_t)cmdline_u64("qd", 4);
    bool check = cmdline_u64("check", 0) != 0;
    uint64_t size = d->sectors * 512;
    if (qd < 1 || qd > MAX_QD || req_bytes < 4096 || req_bytes > (16u << 20) || req_bytes % 4096 || count == 0
        || size < req_bytes)
        rt_fail(3, "bad qd=%u, req_kb=%u or count=%lu for a disk of %lu bytes", qd, req_bytes >> 10,
                (unsigned long)count, (unsigned long)size);
    uint64_t slots = size / req_bytes;
    uint8_t* bufs = rt_alloc((uint64_t)qd * req_bytes, 4096);
    uint64_t next = 0, errors = 0, done = 0;
    uint32_t inflight = 0;
    uint64_t t0 = rdtsc();
    uint64_t deadline = t0 + 600000 * rt_tsc_khz();
    for (;;) {
        while (inflight < qd && next < count) {
            /* Evenly spread: request i reads slot i * slots / count. */
            uint32_t s = 0;
            while (g_reqs[s].user != 0)
                ++s;
            uint64_t off = (next * slots / count) * req_bytes;
            g_offset[s] = off;
            g_reqs[s].user = s + 1;
            if (blk_queue(d, &g_reqs[s], VIRTIO_BLK_T_IN, off / 512, bufs + (uint64_t)s * req_bytes, req_bytes) != 0)
                rt_fail(4, "cannot queue a read of %u bytes", req_bytes);
            ++next;
            ++inflight;
        }
        blk_kick(d);
        if (inflight == 0)
            break;
        struct blk_req* r = blk_poll(d);
        if (!r) {
            if (rdtsc() > deadline)
                rt_fail(5, "reads stalled with %u in flight", inflight);
            continue;
        }
        uint32_t s = (uint32_t)(r->user - 1);
        --inflight;
        if (r->status != VIRTIO_BLK_S_OK) {
            if (errors < 5)
                printf("blkread: read at byte %lu failed with status %u\n", (unsigned long)g_offset[s], r->status);
            ++errors;
        } else {
            ++done;
            if (check)
                check_block(bufs + (uint64_t)s * req_bytes, g_offset[s], req_bytes);
        }
        r->user = 0;
    }
    uint64_t us = rt_tsc_to_us(rdtsc() - t0);
    printf("blkread: ok %lu requests (%lu MiB) in %lu ms, errors %lu\n", (unsigned long)done,
           (unsigned long)(done * req_bytes >> 20), (unsigned long)(us / 1000), (unsigned long)errors);
    return errors ? 7 : 0;
}
