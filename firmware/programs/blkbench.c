/* blkbench: sequential throughput of one virtio-blk disk. Writes, then reads,
 * `mb=` MiB (default 256) from the start of the disk in requests of `req_kb=` KiB
 * (default 1024) with `qd=` requests in flight (default 8); `mode=read|write|both`
 * (default both); `fill=random` writes incompressible data (default: zeros but
 * one word per 4 KiB); `disk=N` picks the disk (default the first writable one, or
 * disk 0 for mode=read); `wait_ms=` waits that long before the first phase (for
 * hosts where what started the VM still runs: its CPU time is not the disk's).
 * The guest never touches the data beyond one word per
 * 4 KiB of the buffers at start: guest code may be emulated, and the point is to
 * time the VMM's I/O path. The host times the whole process; the guest also
 * prints its own TSC-timed figure per phase:
 *   blkbench: write 256 MiB in 1234 ms (207 MiB/s) qd 8 req 1024 KiB, data 1230120 us, flush 3880 us
 * (the write phase ends with a flush where the disk offers one; its time is part
 * of the phase's and also printed apart, after the data requests' own). */
#include "blk.h"
#include "io.h"
#include "runtime.h"

const char rt_program_name[] = "blkbench";

#define MAX_QD 32

static struct blk_dev g_disks[BLK_MAX_DISKS];
static struct blk_req g_reqs[MAX_QD];

static void run_phase(struct blk_dev* d, uint32_t type, uint64_t total, uint32_t req_bytes, uint32_t qd,
                      uint8_t* bufs)
{
    uint64_t next = 0;
    uint32_t inflight = 0;
    uint64_t t0 = rdtsc();
    uint64_t deadline = t0 + 600000 * rt_tsc_khz();
    /* Slots are reused as requests complete; each slot owns one buffer. */
    for (uint32_t s = 0; s < qd && next < total; ++s) {
        uint32_t len = total - next < req_bytes ? (uint32_t)(total - next) : req_bytes;
        g_reqs[s].user = s;
        if (blk_queue(d, &g_reqs[s], type, next / 512, bufs + (uint64_t)s * req_bytes, len) != 0)
            rt_fail(4, "cannot queue request %u of %u bytes (queue %u, seg_max %u)", s, len, d->vq.size, d->seg_max);
        next += len;
        ++inflight;
    }
    blk_kick(d);
    while (inflight) {
        struct blk_req* r = blk_poll(d);
        if (!r) {
            if (rdtsc() > deadline)
                rt_fail(5, "%s phase stalled with %u requests in flight", blk_type_name(type), inflight);
            continue;
        }
        --inflight;
        if (r->status != VIRTIO_BLK_S_OK)
            rt_fail(6, "%s at sector %lu failed with status %u", blk_type_name(type), (unsigned long)r->hdr.sector,
                    r->status);
        if (next < total) {
            uint32_t len = total - next < req_bytes ? (uint32_t)(total - next) : req_bytes;
            uint64_t s = r->user;
            if (blk_queue(d, r, type, next / 512, bufs + s * req_bytes, len) != 0)
                rt_fail(4, "cannot requeue");
            r->user = s;
            next += len;
            ++inflight;
            blk_kick(d);
        }
    }
    uint64_t const t_data = rdtsc();
    bool flushed = false;
    if (type == VIRTIO_BLK_T_OUT && (d->features & VIRTIO_BLK_F_FLUSH)) {
        uint8_t st = blk_sync(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
        if (st != VIRTIO_BLK_S_OK)
            rt_fail(6, "flush failed with status %u", st);
        flushed = true;
    }
    uint64_t const t1 = rdtsc();
    uint64_t us = rt_tsc_to_us(t1 - t0);
    printf("blkbench: %s %lu MiB in %lu ms (%lu MiB/s) qd %u req %u KiB", blk_type_name(type),
           (unsigned long)(total >> 20), (unsigned long)(us / 1000),
           (unsigned long)(us ? (total >> 20) * 1000000 / us : 0), qd, req_bytes >> 10);
    /* The data requests' own time apart from the closing flush's: a rate limit
     * governs the former only, and a flush's time is the host's to spend. */
    if (flushed)
        printf(", data %lu us, flush %lu us", (unsigned long)rt_tsc_to_us(t_data - t0),
               (unsigned long)rt_tsc_to_us(t1 - t_data));
    printf("\n");
}

int main(const char* cmdline)
{
    (void)cmdline;
    int n = blk_open_all(g_disks, BLK_MAX_DISKS);
    if (n == 0)
        rt_fail(2, "no virtio-blk disks found");
    bool do_read = !cmdline_is("mode", "write");
    bool do_write = !cmdline_is("mode", "read");
    uint64_t pick = cmdline_u64("disk", 1000);
    if (pick == 1000) {
        pick = 0;
        for (int i = 0; do_write && i < n; ++i) {
            if (!g_disks[i].read_only) {
                pick = (uint64_t)i;
                break;
            }
        }
    }
    if (pick >= (uint64_t)n)
        rt_fail(3, "disk=%lu but only %d disks", (unsigned long)pick, n);
    struct blk_dev* d = &g_disks[pick];
    if (do_write && d->read_only)
        rt_fail(3, "disk %lu is read-only; use mode=read", (unsigned long)pick);
    uint64_t total = cmdline_u64("mb", 256) << 20;
    uint32_t req_bytes = (uint32_t)(cmdline_u64("req_kb", 1024) << 10);
    uint32_t qd = (uint32_t)cmdline_u64("qd", 8);
    if (qd < 1 || qd > MAX_QD || req_bytes < 4096 || req_bytes > (64u << 20) || req_bytes % 4096)
        rt_fail(3, "bad qd=%u or req_kb=%u", qd, req_bytes >> 10);
    if (total > d->sectors * 512)
        total = (d->sectors * 512) & ~((uint64_t)(1 << 20) - 1);
    if (total == 0)
        rt_fail(3, "disk %lu is smaller than 1 MiB", (unsigned long)pick);
    uint8_t* bufs = rt_alloc((uint64_t)qd * req_bytes, 4096);
    for (uint64_t off = 0; off < (uint64_t)qd * req_bytes; off += 4096)
        *(uint64_t*)(bufs + off) = 0x424c4b42454e4348ull ^ off;
    /* fill=random: whole buffers of xorshift64 output, so that what is written
     * does not compress (the registry bench's differential capture). */
    if (cmdline_is("fill", "random")) {
        uint64_t x = 0x9e3779b97f4a7c15ull ^ cmdline_u64("seed", 1);
        for (uint64_t off = 0; off < (uint64_t)qd * req_bytes; off += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *(uint64_t*)(bufs + off) = x;
        }
    }
    printf("blkbench: disk %lu %s, %lu MiB, tsc %lu kHz from %s\n", (unsigned long)pick, d->dev.name,
           (unsigned long)(total >> 20), (unsigned long)rt_tsc_khz(), rt_tsc_source());
    uint64_t const wait_ms = cmdline_u64("wait_ms", 0);
    if (wait_ms > 600000)
        rt_fail(3, "wait_ms=%lu is over 600000", (unsigned long)wait_ms);
    for (uint64_t const until = rdtsc() + wait_ms * rt_tsc_khz(); rdtsc() < until;)
        __asm__ volatile("pause");
    if (do_write)
        run_phase(d, VIRTIO_BLK_T_OUT, total, req_bytes, qd, bufs);
    if (do_read)
        run_phase(d, VIRTIO_BLK_T_IN, total, req_bytes, qd, bufs);
    printf("blkbench: done\n");
    return 0;
}
