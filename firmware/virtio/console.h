/* virtio-console for firmware programs (virtio 1.2 section 5.3): the first console
 * device the transports find, one port (no MULTIPORT), receiveq0 and transmitq0,
 * polled. Received bytes are gathered into lines (the guest agent protocol is one
 * JSON object per line); a line longer than VCON_LINE_MAX is dropped up to its
 * newline. Not implemented: MULTIPORT, SIZE, EMERG_WRITE, interrupts.
 * Threading: BSP only. */
#pragma once

#include "virtio.h"

#include <stddef.h>

#define VIRTIO_ID_CONSOLE 3
#define VCON_RX_BUFS 4
#define VCON_RX_BUF_SIZE 256
#define VCON_LINE_MAX 1024
#define VCON_PENDING 2048

struct vcon {
    struct virtio_dev dev;
    struct virtq rxq, txq;
    uint8_t* rx;                /* VCON_RX_BUFS buffers of VCON_RX_BUF_SIZE */
    uint8_t* tx;                /* one transmit buffer */
    uint8_t pending[VCON_PENDING]; /* received, not yet split into lines */
    uint32_t pending_len;
    uint32_t line_len;          /* bytes of the current line consumed so far */
    bool discarding;            /* inside an over-long line */
    bool tx_busy;               /* a timed-out send: the device still holds tx */
};

/* Opens the first console; 0 on success, -1 when there is none. */
int vcon_open(struct vcon* c);
/* Copies the next complete line (without the newline, NUL-terminated) into out and
 * returns its length, or returns -1 when no complete line has arrived. Never waits. */
int vcon_poll_line(struct vcon* c, char* out, size_t cap);
/* Sends n bytes and waits (up to 1 s of running time) until the device has taken
 * them; 0 on success. */
int vcon_write(struct vcon* c, const char* s, size_t n);
