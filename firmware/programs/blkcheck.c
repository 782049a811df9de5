/* blkcheck: a functional check of every virtio-blk disk the guest finds.
 * For each writable disk: writes a pattern (two segments per request) at the
 * start, the middle and the end, flushes, reads it back and compares;
 * WRITE_ZEROES then reads zeros; DISCARD, and with `discard_zeroes=1` on the
 * command line reads zeros after it. For each read-only disk (VIRTIO_BLK_F_RO):
 * a write must fail (IOERR, or the device rejects it) and leave the data as it
 * was. GET_ID is printed for every disk. `disks=N` requires exactly N disks.
 * Prints a line per disk and `blkcheck: OK`, exit 0; otherwise the reason and
 * an exit code naming the failed step. Checks only a few hundred KiB per disk:
 * guest code may be emulated at about a million instructions per second. */
#include "blk.h"
#include "runtime.h"

const char rt_program_name[] = "blkcheck";

#define CHUNK (32u * 1024)
#define ZERO_LEN (16u * 1024)

static uint8_t* g_buf;
static uint8_t* g_check;

static uint64_t pattern_word(int disk, uint64_t sector, size_t i)
{
    return 0x5354524154410000ull ^ ((uint64_t)disk << 56) ^ (sector << 20) ^ i;
}

static void fill(int disk, uint64_t sector, uint8_t* buf, uint32_t len)
{
    uint64_t* w = (uint64_t*)buf;
    for (size_t i = 0; i < len / 8; ++i)
        w[i] = pattern_word(disk, sector, i);
}

static void expect_status(struct blk_dev* d, uint8_t got, uint32_t type, int code)
{
    if (got != VIRTIO_BLK_S_OK)
        rt_fail(code, "disk %d (%s): %s returned status %u", d->index, d->dev.name, blk_type_name(type), got);
}

static void check_zeros(struct blk_dev* d, uint64_t sector, uint32_t len, const char* after, int code)
{
    memset(g_check, 0xa5, len);
    expect_status(d, blk_sync(d, VIRTIO_BLK_T_IN, sector, g_check, len), VIRTIO_BLK_T_IN, code);
    const uint64_t* w = (const uint64_t*)g_check;
    for (size_t i = 0; i < len / 8; ++i)
        if (w[i])
            rt_fail(code, "disk %d: byte %lu of sector %lu not zero after %s", d->index, (unsigned long)(i * 8),
                    (unsigned long)sector, after);
}

static void check_writable(struct blk_dev* d, bool discard_zeroes)
{
    if (d->sectors < 3 * CHUNK / 512)
        rt_fail(10, "disk %d: too small (%lu sectors)", d->index, (unsigned long)d->sectors);
    uint64_t spots[3] = { 0, (d->sectors / 2) & ~7ull, d->sectors - CHUNK / 512 };
    for (int s = 0; s < 3; ++s) {
        fill(d->index, spots[s], g_buf, CHUNK);
        /* Two segments per request: half the buffer each. */
        static struct blk_req req;
        uint32_t saved = d->size_max;
        if (!d->size_max || d->size_max > CHUNK / 2)
            d->size_max = CHUNK / 2;
        uint8_t st = blk_queue(d, &req, VIRTIO_BLK_T_OUT, spots[s], g_buf, CHUNK) == 0 ? 0 : 0xfe;
        d->size_max = saved;
        if (st)
            rt_fail(11, "disk %d: cannot queue a write", d->index);
        blk_kick(d);
        while (!req.done)
            blk_poll(d);
        expect_status(d, req.status, VIRTIO_BLK_T_OUT, 11);
    }
    if (d->features & VIRTIO_BLK_F_FLUSH)
        expect_status(d, blk_sync(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_T_FLUSH, 12);
    for (int s = 0; s < 3; ++s) {
        memset(g_check, 0, CHUNK);
        expect_status(d, blk_sync(d, VIRTIO_BLK_T_IN, spots[s], g_check, CHUNK), VIRTIO_BLK_T_IN, 13);
        const uint64_t* w = (const uint64_t*)g_check;
        for (size_t i = 0; i < CHUNK / 8; ++i)
            if (w[i] != pattern_word(d->index, spots[s], i))
                rt_fail(14, "disk %d: read back mismatch at sector %lu byte %lu", d->index,
                        (unsigned long)spots[s], (unsigned long)(i * 8));
    }
    if (!(d->features & VIRTIO_BLK_F_WRITE_ZEROES))
        rt_fail(15, "disk %d: WRITE_ZEROES not offered", d->index);
    expect_status(d, blk_sync(d, VIRTIO_BLK_T_WRITE_ZEROES, spots[1], 0, ZERO_LEN), VIRTIO_BLK_T_WRITE_ZEROES, 15);
    check_zeros(d, spots[1], ZERO_LEN, "WRITE_ZEROES", 16);
    if (d->features & VIRTIO_BLK_F_DISCARD) {
        expect_status(d, blk_sync(d, VIRTIO_BLK_T_DISCARD, spots[2], 0, ZERO_LEN), VIRTIO_BLK_T_DISCARD, 17);
        if (discard_zeroes)
            check_zeros(d, spots[2], ZERO_LEN, "DISCARD", 18);
    } else if (discard_zeroes) {
        rt_fail(17, "disk %d: discard_zeroes=1 but DISCARD not offered", d->index);
    }
}

static void check_read_only(struct blk_dev* d)
{
    uint32_t len = 4096;
    expect_status(d, blk_sync(d, VIRTIO_BLK_T_IN, 0, g_check, len), VIRTIO_BLK_T_IN, 20);
    memcpy(g_buf + CHUNK / 2, g_check, len);
    fill(d->index, 0, g_buf, len);
    uint8_t st = blk_sync(d, VIRTIO_BLK_T_OUT, 0, g_buf, len);
    if (st == VIRTIO_BLK_S_OK)
        rt_fail(21, "disk %d: read-only disk accepted a write", d->index);
    if (st == BLK_S_TIMEOUT)
        rt_fail(21, "disk %d: write to a read-only disk never completed", d->index);
    expect_status(d, blk_sync(d, VIRTIO_BLK_T_IN, 0, g_check, len), VIRTIO_BLK_T_IN, 22);
    if (memcmp(g_check, g_buf + CHUNK / 2, len) != 0)
        rt_fail(22, "disk %d: read-only disk changed after a refused write", d->index);
}

int main(const char* cmdline)
{
    (void)cmdline;
    static struct blk_dev disks[BLK_MAX_DISKS];
    int n = blk_open_all(disks, BLK_MAX_DISKS);
    uint64_t want = cmdline_u64("disks", 0);
    if (n == 0)
        rt_fail(2, "no virtio-blk disks found");
    if (want && (uint64_t)n != want)
        rt_fail(3, "found %d disks, expected %lu", n, (unsigned long)want);
    bool discard_zeroes = cmdline_is("discard_zeroes", "1");
    g_buf = rt_alloc(CHUNK, 4096);
    g_check = rt_alloc(CHUNK, 4096);
    for (int i = 0; i < n; ++i) {
        struct blk_dev* d = &disks[i];
        char id[21];
        memset(id, 0, sizeof(id));
        uint8_t st = blk_sync(d, VIRTIO_BLK_T_GET_ID, 0, id, 20);
        if (st == BLK_S_TIMEOUT)
            rt_fail(4, "disk %d: GET_ID never completed", i);
        if (st != VIRTIO_BLK_S_OK)
            snprintf(id, sizeof(id), "(status %u)", st);
        if (d->read_only)
            check_read_only(d);
        else
            check_writable(d, discard_zeroes);
        printf("blkcheck: disk %d %s id=%s sectors=%lu %s ok\n", i, d->dev.name, id, (unsigned long)d->sectors,
               d->read_only ? "read-only refused-write" : "read-write verified");
    }
    printf("blkcheck: OK (%d disks)\n", n);
    return 0;
}
