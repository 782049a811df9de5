/* virtio-console driver: see console.h. The receive buffers are posted once and
 * reposted as soon as their bytes are copied out, so the device always has room
 * while the program polls. */
#include "console.h"
#include "io.h"
#include "runtime.h"

static void post_rx(struct vcon* c, int i)
{
    struct virtq_buf b = { (uint64_t)(c->rx + (uint64_t)i * VCON_RX_BUF_SIZE), VCON_RX_BUF_SIZE, true };
    /* Tokens must be non-zero (virtq_poll returns 0 for "nothing"). */
    if (virtq_add(&c->rxq, &b, 1, (void*)(uintptr_t)(i + 1)) != 0)
        rt_fail(42, "%s: cannot post a receive buffer", c->dev.name);
}

int vcon_open(struct vcon* c)
{
    memset(c, 0, sizeof(*c));
    if (virtio_find(VIRTIO_ID_CONSOLE, &c->dev, 1) < 1)
        return -1;
    if (!vdev_negotiate(&c->dev, 0))
        return -1;
    if (virtq_init(&c->rxq, &c->dev, 0, 16) != 0 || virtq_init(&c->txq, &c->dev, 1, 16) != 0) {
        printf("virtio-console: %s: queue setup failed\n", c->dev.name);
        vdev_set_status(&c->dev, VIRTIO_STATUS_FAILED);
        return -1;
    }
    c->rx = rt_alloc(VCON_RX_BUFS * VCON_RX_BUF_SIZE, 4096);
    c->tx = rt_alloc(VCON_LINE_MAX, 4096);
    vdev_set_status(&c->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK
                                 | VIRTIO_STATUS_DRIVER_OK);
    for (int i = 0; i < VCON_RX_BUFS; ++i)
        post_rx(c, i);
    virtq_kick(&c->rxq);
    printf("virtio-console: %s\n", c->dev.name);
    return 0;
}

/* Moves completed receive buffers into `pending` and reposts them. Bytes that do
 * not fit are dropped (the host sends short lines; a flood only loses data). */
static void gather(struct vcon* c)
{
    uint32_t len;
    void* token;
    bool reposted = false;
    while ((token = virtq_poll(&c->rxq, &len)) != 0) {
        int i = (int)((uintptr_t)token - 1);
        if (len > VCON_RX_BUF_SIZE)
            len = VCON_RX_BUF_SIZE;
        uint32_t room = VCON_PENDING - c->pending_len;
        uint32_t n = len < room ? len : room;
        memcpy(c->pending + c->pending_len, c->rx + (uint64_t)i * VCON_RX_BUF_SIZE, n);
        c->pending_len += n;
        post_rx(c, i);
        reposted = true;
    }
    if (reposted)
        virtq_kick(&c->rxq);
}

int vcon_poll_line(struct vcon* c, char* out, size_t cap)
{
    gather(c);
    for (;;) {
        uint32_t nl = 0;
        while (nl < c->pending_len && c->pending[nl] != '\n')
            ++nl;
        if (nl == c->pending_len) {
            /* No newline yet: an over-long partial line is dropped as it grows. */
            if (c->pending_len >= cap || c->pending_len >= VCON_LINE_MAX) {
                c->discarding = true;
                c->pending_len = 0;
            }
            return -1;
        }
        bool drop = c->discarding || nl >= cap;
        int n = (int)nl;
        if (!drop) {
            memcpy(out, c->pending, nl);
            out[nl] = 0;
            if (n > 0 && out[n - 1] == '\r')
                out[--n] = 0;
        }
        memmove(c->pending, c->pending + nl + 1, c->pending_len - nl - 1);
        c->pending_len -= nl + 1;
        c->discarding = false;
        if (!drop)
            return n;
    }
}

int vcon_write(struct vcon* c, const char* s, size_t n)
{
    if (n > VCON_LINE_MAX)
        return -1;
    /* A send that timed out left the buffer with the device: it must come back
     * before the buffer is written again. */
    if (c->tx_busy) {
        if (virtq_wait_used(&c->txq, 1000) != 0)
            return -1;
        c->tx_busy = false;
    }
    memcpy(c->tx, s, n);
    struct virtq_buf b = { (uint64_t)c->tx, (uint32_t)n, false };
    if (virtq_add(&c->txq, &b, 1, (void*)1) != 0)
        return -1;
    virtq_kick(&c->txq);
    if (virtq_wait_used(&c->txq, 1000) != 0) {
        c->tx_busy = true; /* the device still holds the buffer */
        return -1;
    }
    return 0;
}
