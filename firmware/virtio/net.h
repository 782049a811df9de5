/* virtio-net for firmware programs (virtio 1.2 section 5.1): the first network
 * device the transports find, one queue pair, polled. Negotiates VERSION_1, MAC
 * and MRG_RXBUF (to exercise a VMM's mergeable receive path; every buffer holds a
 * full 1514-byte frame, so a packet that still spans several is dropped and
 * counted), no offloads: every packet in either direction carries full
 * checksums. Not implemented: control queue, multiqueue, interrupts.
 * Threading: BSP only. */
#pragma once

#include "virtio.h"

#include <stddef.h>

#define VIRTIO_ID_NET 1
#define VNET_HDR_SIZE 12
#define VNET_RX_BUFS 16
#define VNET_BUF_SIZE 2048
#define VNET_FRAME_MAX 1514

struct vnet {
    struct virtio_dev dev;
    struct virtq rxq, txq;
    uint8_t mac[6];
    uint64_t features;
    uint8_t* rx;  /* VNET_RX_BUFS buffers of VNET_BUF_SIZE */
    uint8_t* tx;  /* one transmit buffer */
    uint32_t rx_spanning; /* buffers still to skip of a multi-buffer packet */
    uint64_t rx_packets, tx_packets, rx_dropped;
    bool tx_busy; /* a timed-out send: the device still holds tx */
};

/* Opens the first network device; 0 on success, -1 when there is none. */
int vnet_open(struct vnet* n);
/* The next received frame (without the virtio header) copied into out (at least
 * VNET_FRAME_MAX bytes); returns its length, or 0 when none has arrived. Never waits. */
uint32_t vnet_receive(struct vnet* n, uint8_t* out);
/* Sends a frame and waits (up to 1 s of running time) until the device has taken
 * it; 0 on success. */
int vnet_send(struct vnet* n, const uint8_t* frame, uint32_t len);
