/* virtio-blk for firmware programs (virtio 1.2 section 5.2): opens every block
 * device the transports find, negotiates VERSION_1, RO, FLUSH, DISCARD,
 * WRITE_ZEROES, SEG_MAX, SIZE_MAX and BLK_SIZE, and submits requests on queue 0,
 * which the caller polls for completions. Data buffers are physical (identity
 * mapped) and split into segments no larger than SIZE_MAX; a request carries its
 * own header and status byte, so it must stay in place until it completes.
 * Not implemented: multiqueue, config-change handling, GEOMETRY/TOPOLOGY.
 * Threading: BSP only. */
#pragma once

#include "virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX (1ull << 1)
#define VIRTIO_BLK_F_SEG_MAX (1ull << 2)
#define VIRTIO_BLK_F_RO (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)
#define VIRTIO_BLK_F_DISCARD (1ull << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ull << 14)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define BLK_S_TIMEOUT 0xff /* not from the device: no completion in time */

#define BLK_MAX_DISKS 8
#define BLK_MAX_SEGS 64

struct blk_dev {
    struct virtio_dev dev;
    struct virtq vq;
    int index;            /* position in discovery order */
    uint64_t features;    /* accepted */
    uint64_t sectors;     /* capacity in 512-byte sectors */
    uint32_t size_max;    /* bytes per segment; 0 = no limit */
    uint32_t seg_max;     /* data segments per request; 0 = no limit */
    uint32_t blk_size;
    bool read_only;
    uint32_t inflight;
};

struct blk_req {
    struct {
        uint32_t type;
        uint32_t reserved;
        uint64_t sector;
    } hdr;
    struct {
        uint64_t sector;
        uint32_t num_sectors;
        uint32_t flags;
    } range;              /* DISCARD / WRITE_ZEROES payload */
    volatile uint8_t status;
    bool done;
    uint32_t used_len;
    uint64_t user;        /* free for the caller */
};

/* Opens up to `max` disks (BLK_MAX_DISKS at most); prints one line each. */
int blk_open_all(struct blk_dev* disks, int max);

/* Queues a request without notifying; -1 when the queue lacks descriptors or the
 * request breaks SEG_MAX. For DISCARD/WRITE_ZEROES `sector`/`len` give the range
 * and `buf` is ignored. */
int blk_queue(struct blk_dev* d, struct blk_req* r, uint32_t type, uint64_t sector, void* buf, uint32_t len);
void blk_kick(struct blk_dev* d);
/* Returns a completed request (marked done) or 0. */
struct blk_req* blk_poll(struct blk_dev* d);
/* Queue, kick and wait (up to 30 s); returns the status byte or BLK_S_TIMEOUT. */
uint8_t blk_sync(struct blk_dev* d, uint32_t type, uint64_t sector, void* buf, uint32_t len);
const char* blk_type_name(uint32_t type);
