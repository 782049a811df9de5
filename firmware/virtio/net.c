/* virtio-net driver: see net.h. Receive buffers are posted once and reposted as
 * soon as their frame is copied out. */
#include "net.h"
#include "io.h"
#include "runtime.h"

#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)

static void post_rx(struct vnet* n, int i)
{
    struct virtq_buf b = { (uint64_t)(n->rx + (uint64_t)i * VNET_BUF_SIZE), VNET_BUF_SIZE, true };
    if (virtq_add(&n->rxq, &b, 1, (void*)(uintptr_t)(i + 1)) != 0)
        rt_fail(42, "%s: cannot post a receive buffer", n->dev.name);
}

int vnet_open(struct vnet* n)
{
    memset(n, 0, sizeof(*n));
    if (virtio_find(VIRTIO_ID_NET, &n->dev, 1) < 1)
        return -1;
    n->features = vdev_negotiate(&n->dev, VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF);
    if (!n->features)
        return -1;
    if (!(n->features & VIRTIO_NET_F_MAC)) {
        printf("virtio-net: %s has no MAC in its configuration\n", n->dev.name);
        vdev_set_status(&n->dev, VIRTIO_STATUS_FAILED);
        return -1;
    }
    for (int i = 0; i < 6; ++i)
        n->mac[i] = vdev_cfg_read8(&n->dev, (uint32_t)i);
    if (virtq_init(&n->rxq, &n->dev, 0, VNET_RX_BUFS) != 0 || virtq_init(&n->txq, &n->dev, 1, 16) != 0) {
        printf("virtio-net: %s: queue setup failed\n", n->dev.name);
        vdev_set_status(&n->dev, VIRTIO_STATUS_FAILED);
        return -1;
    }
    n->rx = rt_alloc(VNET_RX_BUFS * VNET_BUF_SIZE, 4096);
    n->tx = rt_alloc(VNET_BUF_SIZE, 4096);
    vdev_set_status(&n->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK
                                 | VIRTIO_STATUS_DRIVER_OK);
    for (int i = 0; i < VNET_RX_BUFS && i < n->rxq.size; ++i)
        post_rx(n, i);
    virtq_kick(&n->rxq);
    printf("virtio-net: %s mac %02x:%02x:%02x:%02x:%02x:%02x%s\n", n->dev.name, n->mac[0], n->mac[1], n->mac[2],
           n->mac[3], n->mac[4], n->mac[5], (n->features & VIRTIO_NET_F_MRG_RXBUF) ? " mrg_rxbuf" : "");
    return 0;
}

uint32_t vnet_receive(struct vnet* n, uint8_t* out)
{
    uint32_t len;
    void* token;
    while ((token = virtq_poll(&n->rxq, &len)) != 0) {
        int i = (int)((uintptr_t)token - 1);
        const uint8_t* buf = n->rx + (uint64_t)i * VNET_BUF_SIZE;
        uint32_t got = 0;
        if (n->rx_spanning > 0) {
            /* The rest of a packet too large for one buffer: skipped. */
            --n->rx_spanning;
        } else if (len < VNET_HDR_SIZE || len > VNET_BUF_SIZE) {
            ++n->rx_dropped;
        } else {
            uint16_t num_buffers = (uint16_t)(buf[10] | buf[11] << 8);
            if ((n->features & VIRTIO_NET_F_MRG_RXBUF) && num_buffers > 1) {
                n->rx_spanning = num_buffers - 1u;
                ++n->rx_dropped;
            } else if (len - VNET_HDR_SIZE > VNET_FRAME_MAX) {
                ++n->rx_dropped;
            } else {
                got = len - VNET_HDR_SIZE;
                memcpy(out, buf + VNET_HDR_SIZE, got);
                ++n->rx_packets;
            }
        }
        post_rx(n, i);
        virtq_kick(&n->rxq);
        if (got)
            return got;
    }
    return 0;
}

int vnet_send(struct vnet* n, const uint8_t* frame, uint32_t len)
{
    if (len > VNET_FRAME_MAX)
        return -1;
    /* A send that timed out left the buffer with the device: it must come back
     * before the buffer is written again. */
    if (n->tx_busy) {
        if (virtq_wait_used(&n->txq, 1000) != 0)
            return -1;
        n->tx_busy = false;
    }
    memset(n->tx, 0, VNET_HDR_SIZE);
    memcpy(n->tx + VNET_HDR_SIZE, frame, len);
    struct virtq_buf b = { (uint64_t)n->tx, VNET_HDR_SIZE + len, false };
    if (virtq_add(&n->txq, &b, 1, (void*)1) != 0)
        return -1;
    virtq_kick(&n->txq);
    if (virtq_wait_used(&n->txq, 1000) != 0) {
        n->tx_busy = true; /* the device still holds the buffer */
        return -1;
    }
    ++n->tx_packets;
    return 0;
}
