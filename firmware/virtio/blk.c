/* virtio-blk requests (virtio 1.2 section 5.2.6): a chain of the 16-byte header
 * (device-readable), the data segments (device-writable for IN and GET_ID) or the
 * discard/write-zeroes range, and the status byte (device-writable). */
#include "blk.h"
#include "io.h"
#include "runtime.h"

#define QUEUE_SIZE_LIMIT 256

/* Configuration space offsets (virtio 1.2 section 5.2.4). */
enum {
    CFG_CAPACITY = 0,   /* le64 */
    CFG_SIZE_MAX = 8,   /* le32 */
    CFG_SEG_MAX = 12,   /* le32 */
    CFG_BLK_SIZE = 20,  /* le32 */
};

static void print_features(uint64_t f)
{
    static const struct {
        uint64_t bit;
        const char* name;
    } names[] = {
        { VIRTIO_BLK_F_RO, "ro" },         { VIRTIO_BLK_F_FLUSH, "flush" },
        { VIRTIO_BLK_F_DISCARD, "discard" }, { VIRTIO_BLK_F_WRITE_ZEROES, "write_zeroes" },
        { VIRTIO_BLK_F_SEG_MAX, "seg_max" }, { VIRTIO_BLK_F_SIZE_MAX, "size_max" },
        { VIRTIO_BLK_F_BLK_SIZE, "blk_size" },
    };
    const char* sep = "";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
        if (f & names[i].bit) {
            printf("%s%s", sep, names[i].name);
            sep = ",";
        }
    }
}

int blk_open_all(struct blk_dev* disks, int max)
{
    static struct virtio_dev found[BLK_MAX_DISKS];
    if (max > BLK_MAX_DISKS)
        max = BLK_MAX_DISKS;
    int n = virtio_find(VIRTIO_ID_BLOCK, found, max);
    int opened = 0;
    for (int i = 0; i < n; ++i) {
        struct blk_dev* d = &disks[opened];
        memset(d, 0, sizeof(*d));
        d->dev = found[i];
        uint64_t wanted = VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES
            | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_BLK_SIZE;
        d->features = vdev_negotiate(&d->dev, wanted);
        if (!d->features)
            continue;
        if (virtq_init(&d->vq, &d->dev, 0, QUEUE_SIZE_LIMIT) != 0) {
            printf("virtio-blk: %s: queue 0 setup failed\n", d->dev.name);
            vdev_set_status(&d->dev, VIRTIO_STATUS_FAILED);
            continue;
        }
        vdev_set_status(&d->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK
                                     | VIRTIO_STATUS_DRIVER_OK);
        d->sectors = vdev_cfg_read64(&d->dev, CFG_CAPACITY);
        d->size_max = (d->features & VIRTIO_BLK_F_SIZE_MAX) ? vdev_cfg_read32(&d->dev, CFG_SIZE_MAX) : 0;
        d->seg_max = (d->features & VIRTIO_BLK_F_SEG_MAX) ? vdev_cfg_read32(&d->dev, CFG_SEG_MAX) : 0;
        d->blk_size = (d->features & VIRTIO_BLK_F_BLK_SIZE) ? vdev_cfg_read32(&d->dev, CFG_BLK_SIZE) : 512;
        d->read_only = (d->features & VIRTIO_BLK_F_RO) != 0;
        d->index = opened;
        printf("virtio-blk: disk %d %s: %lu sectors, queue %u, seg_max %u, size_max %u, features ", opened,
               d->dev.name, (unsigned long)d->sectors, d->vq.size, d->seg_max, d->size_max);
        print_features(d->features);
        printf("\n");
        ++opened;
    }
    return opened;
}

int blk_queue(struct blk_dev* d, struct blk_req* r, uint32_t type, uint64_t sector, void* buf, uint32_t len)
{
    struct virtq_buf bufs[BLK_MAX_SEGS + 2];
    int n = 0;
    r->hdr.type = type;
    r->hdr.reserved = 0;
    r->hdr.sector = (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT) ? sector : 0;
    r->status = BLK_S_TIMEOUT;
    r->done = false;
    r->used_len = 0;
    bufs[n++] = (struct virtq_buf) { (uint64_t)&r->hdr, sizeof(r->hdr), false };
    if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
        r->range.sector = sector;
        r->range.num_sectors = len / 512;
        r->range.flags = 0;
        bufs[n++] = (struct virtq_buf) { (uint64_t)&r->range, sizeof(r->range), false };
    } else if (len) {
        bool device_writes = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
        uint32_t seg = d->size_max ? d->size_max : len;
        uint64_t addr = (uint64_t)buf;
        for (uint32_t left = len; left;) {
            uint32_t chunk = left < seg ? left : seg;
            if (n - 1 >= BLK_MAX_SEGS || (d->seg_max && (uint32_t)(n - 1) >= d->seg_max))
                return -1;
            bufs[n++] = (struct virtq_buf) { addr, chunk, device_writes };
            addr += chunk;
            left -= chunk;
        }
    }
    bufs[n++] = (struct virtq_buf) { (uint64_t)&r->status, 1, true };
    if (virtq_add(&d->vq, bufs, n, r) != 0)
        return -1;
    d->inflight++;
    return 0;
}

void blk_kick(struct blk_dev* d) { virtq_kick(&d->vq); }

struct blk_req* blk_poll(struct blk_dev* d)
{
    uint32_t len;
    struct blk_req* r = virtq_poll(&d->vq, &len);
    if (r) {
        r->used_len = len;
        r->done = true;
        d->inflight--;
    }
    return r;
}

uint8_t blk_sync(struct blk_dev* d, uint32_t type, uint64_t sector, void* buf, uint32_t len)
{
    static struct blk_req req;
    if (blk_queue(d, &req, type, sector, buf, len) != 0)
        rt_fail(42, "%s: cannot queue a %s request of %u bytes", d->dev.name, blk_type_name(type), len);
    blk_kick(d);
    struct rt_timeout timeout;
    rt_timeout_start(&timeout, 30000);
    while (!req.done) {
        bool got = blk_poll(d) != 0;
        if (rt_timeout_expired(&timeout) && !got)
            return BLK_S_TIMEOUT;
    }
    return req.status;
}

const char* blk_type_name(uint32_t type)
{
    switch (type) {
    case VIRTIO_BLK_T_IN: return "read";
    case VIRTIO_BLK_T_OUT: return "write";
    case VIRTIO_BLK_T_FLUSH: return "flush";
    case VIRTIO_BLK_T_GET_ID: return "get-id";
    case VIRTIO_BLK_T_DISCARD: return "discard";
    case VIRTIO_BLK_T_WRITE_ZEROES: return "write-zeroes";
    default: return "unknown";
    }
}
