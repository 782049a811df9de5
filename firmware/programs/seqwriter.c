/* seqwriter: the multi-disk write-order workload behind crash-consistency checks.
 * Round r writes a record (seqrecord.h) at block r mod N on every writable disk,
 * waits for all the writes, flushes every disk, waits for all the flushes, then
 * starts round r+1. So at any instant every disk holds round R or R+1 as its
 * newest record, and a capture of all disks taken at one instant must show
 * highest rounds within 1 of each other, with the N-1 earlier records intact.
 *
 * Options: `blocks=N` (default 64), `rounds=N` (default: forever), `start=R`
 * (first round, default 0, so a second run can continue a first one),
 * `timeout_ms=N` (default 60000: how long one round's requests may take before
 * the run fails with exit code 5; tests that expect a lost request shorten it).
 * Only time the guest ran counts (rt_timeout): a pause, or a snapshot restored
 * later, does not use up a round's time.
 * Every 100 rounds it prints `seqwriter: round R maxgap_us G`: the largest time
 * between two consecutive request completions during those 100 rounds, from the
 * TSC, whose rate comes from kvmclock or the PIT (runtime/timer.c). A capture
 * that pauses the queues shows up as a large gap. At the end it prints
 * `seqwriter: done rounds N maxgap_us G` with G over the whole run.
 *
 * With `agent=1` (or `agent=silent`) it also serves the guest-agent protocol on
 * the virtio-console between rounds (fwagent.h): a freeze arrives when the last
 * round's writes and flushes have all completed, so every disk holds the same
 * newest round while frozen, and no write is issued until thaw or the freeze's
 * timeout. It also signals boot-complete on port 0x3f0. */
#include "blk.h"
#include "fwagent.h"
#include "io.h"
#include "runtime.h"
#include "seqrecord.h"

const char rt_program_name[] = "seqwriter";

static struct blk_dev g_disks[BLK_MAX_DISKS];
static struct blk_dev* g_writable[BLK_MAX_DISKS];
static uint8_t* g_records[BLK_MAX_DISKS];
static struct blk_req g_reqs[BLK_MAX_DISKS];
static uint64_t g_last_completion;
static uint64_t g_maxgap;
static struct fwagent g_agent;
static uint64_t g_timeout_ms = 60000;

/* Waits until every request in g_reqs[0..n) is done, tracking completion gaps. */
static void wait_all(int n, uint32_t type, uint64_t round)
{
    struct rt_timeout timeout;
    rt_timeout_start(&timeout, g_timeout_ms);
    for (int i = 0; i < n; ++i) {
        while (!g_reqs[i].done) {
            bool any = false;
            for (int k = 0; k < n; ++k) {
                if (blk_poll(g_writable[k])) {
                    uint64_t now = rdtsc();
                    if (now - g_last_completion > g_maxgap)
                        g_maxgap = now - g_last_completion;
                    g_last_completion = now;
                    any = true;
                }
            }
            if (rt_timeout_expired(&timeout) && !any)
                rt_fail(5, "round %lu: %s on disk %d did not complete in %lu ms", (unsigned long)round,
                        blk_type_name(type), g_writable[i]->index, (unsigned long)g_timeout_ms);
        }
        if (g_reqs[i].status != VIRTIO_BLK_S_OK)
            rt_fail(6, "round %lu: %s on disk %d failed with status %u", (unsigned long)round, blk_type_name(type),
                    g_writable[i]->index, g_reqs[i].status);
    }
}

int main(const char* cmdline)
{
    (void)cmdline;
    rt_install_traps();
    int found = blk_open_all(g_disks, BLK_MAX_DISKS);
    int n = 0;
    for (int i = 0; i < found; ++i)
        if (!g_disks[i].read_only)
            g_writable[n++] = &g_disks[i];
    if (n == 0)
        rt_fail(2, "no writable virtio-blk disks");
    uint64_t blocks = cmdline_u64("blocks", 64);
    uint64_t rounds = cmdline_u64("rounds", 0); /* 0: forever */
    uint64_t start = cmdline_u64("start", 0);
    g_timeout_ms = cmdline_u64("timeout_ms", 60000);
    if (blocks == 0)
        rt_fail(3, "blocks must be at least 1");
    for (int i = 0; i < n; ++i) {
        if (g_writable[i]->sectors < blocks * (SEQ_BLOCK / 512))
            rt_fail(3, "disk %d holds %lu sectors, fewer than %lu blocks", g_writable[i]->index,
                    (unsigned long)g_writable[i]->sectors, (unsigned long)blocks);
        g_records[i] = rt_alloc(SEQ_BLOCK, 4096);
        memset(g_records[i], 0, SEQ_BLOCK);
    }
    printf("seqwriter: %d disks, %lu blocks, start %lu, rounds %lu%s, tsc %lu kHz from %s\n", n,
           (unsigned long)blocks, (unsigned long)start, (unsigned long)rounds, rounds ? "" : " (forever)",
           (unsigned long)rt_tsc_khz(), rt_tsc_source());

    fwagent_init(&g_agent);

    uint64_t run_maxgap = 0;
    g_last_completion = rdtsc();
    for (uint64_t r = start; rounds == 0 || r < start + rounds; ++r) {
        /* Between rounds nothing is in flight and every disk is flushed. */
        fwagent_poll(&g_agent);
        uint64_t sector = (r % blocks) * (SEQ_BLOCK / 512);
        for (int i = 0; i < n; ++i) {
            struct seq_record_head* h = (struct seq_record_head*)g_records[i];
            struct seq_record_tail* t = (struct seq_record_tail*)(g_records[i] + SEQ_BLOCK - sizeof(*t));
            h->magic = SEQ_MAGIC;
            h->disk = (uint32_t)g_writable[i]->index;
            h->version = SEQ_VERSION;
            h->round = r;
            h->checksum = seq_checksum(h);
            t->round = r;
            t->magic = SEQ_MAGIC;
            if (blk_queue(g_writable[i], &g_reqs[i], VIRTIO_BLK_T_OUT, sector, g_records[i], SEQ_BLOCK) != 0)
                rt_fail(4, "cannot queue a write on disk %d", g_writable[i]->index);
            blk_kick(g_writable[i]);
        }
        wait_all(n, VIRTIO_BLK_T_OUT, r);
        for (int i = 0; i < n; ++i) {
            if (!(g_writable[i]->features & VIRTIO_BLK_F_FLUSH)) {
                g_reqs[i].done = true; /* no volatile write cache: writes are stable */
                g_reqs[i].status = VIRTIO_BLK_S_OK;
                continue;
            }
            if (blk_queue(g_writable[i], &g_reqs[i], VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0)
                rt_fail(4, "cannot queue a flush on disk %d", g_writable[i]->index);
            blk_kick(g_writable[i]);
        }
        wait_all(n, VIRTIO_BLK_T_FLUSH, r);
        if ((r - start + 1) % 100 == 0) {
            printf("seqwriter: round %lu maxgap_us %lu\n", (unsigned long)r, (unsigned long)rt_tsc_to_us(g_maxgap));
            if (g_maxgap > run_maxgap)
                run_maxgap = g_maxgap;
            g_maxgap = 0;
        }
    }
    if (g_maxgap > run_maxgap)
        run_maxgap = g_maxgap;
    printf("seqwriter: done rounds %lu maxgap_us %lu\n", (unsigned long)rounds, (unsigned long)rt_tsc_to_us(run_maxgap));
    return 0;
}
