/* A minimal virtio 1.x driver core for firmware programs: device discovery and
 * the transport operations for virtio-mmio version 2 and modern virtio-pci, and
 * split virtqueues that the driver polls (no interrupts). Spec: virtio 1.2,
 * sections 2 (basic facilities), 4.1 (PCI) and 4.2 (MMIO).
 *
 * Not implemented: legacy (pre-1.0) devices, packed queues, indirect
 * descriptors, EVENT_IDX, MSI-X (the driver never waits for interrupts), more
 * than one queue per device. Threading: BSP only. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

enum virtio_transport { VIRTIO_MMIO, VIRTIO_PCI };

struct virtio_dev {
    enum virtio_transport transport;
    uint32_t device_id;
    char name[40];          /* "mmio@0xd0000000" or "pci 00:03.0" */
    uint64_t mmio_base;     /* virtio-mmio register block */
    uint8_t bus, slot, func; /* virtio-pci location */
    uint64_t common_cfg;    /* virtio-pci structures, as mapped addresses */
    uint64_t notify_base;
    uint32_t notify_mult;
    uint64_t device_cfg;
};

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq {
    struct virtio_dev* dev;
    uint16_t index;
    uint16_t size;
    volatile struct virtq_desc* desc;
    volatile uint16_t* avail;          /* flags, idx, ring[size], used_event */
    volatile uint16_t* used;           /* flags, idx, then virtq_used_elem[size] */
    uint64_t notify_addr;
    uint16_t free_head;
    uint16_t num_free;
    uint16_t avail_idx;                /* our copy of avail->idx */
    uint16_t last_used;
    void** tokens;                     /* per head descriptor: the caller's request */
};

/* One buffer of a descriptor chain. */
struct virtq_buf {
    uint64_t addr;
    uint32_t len;
    bool device_writes;
};

/* Finds up to `max` devices with `device_id`. The transport comes from the
 * command line's `transport=mmio|pci`; without it both are tried (mmio first).
 * Prints one line per device found; returns the number found. */
int virtio_find(uint32_t device_id, struct virtio_dev* out, int max);
int virtio_mmio_find(uint32_t device_id, struct virtio_dev* out, int max);
int virtio_pci_find(uint32_t device_id, struct virtio_dev* out, int max);

/* Transport operations (virtio 1.2 section 3.1.1 order is the caller's job). */
void vdev_reset(struct virtio_dev* d);
uint8_t vdev_status(struct virtio_dev* d);
void vdev_set_status(struct virtio_dev* d, uint8_t status);
uint64_t vdev_features(struct virtio_dev* d);
void vdev_set_features(struct virtio_dev* d, uint64_t features);
uint32_t vdev_cfg_read32(struct virtio_dev* d, uint32_t offset);
uint8_t vdev_cfg_read8(struct virtio_dev* d, uint32_t offset);
uint64_t vdev_cfg_read64(struct virtio_dev* d, uint32_t offset);

/* Negotiates: reset, ACKNOWLEDGE|DRIVER, accepts `wanted & offered` (VERSION_1
 * is required), FEATURES_OK and checks it stuck. Returns the accepted set, or 0
 * after setting FAILED. */
uint64_t vdev_negotiate(struct virtio_dev* d, uint64_t wanted);

/* Sets up queue `index` with at most `max_size` entries; 0 on success. */
int virtq_init(struct virtq* q, struct virtio_dev* d, uint16_t index, uint16_t max_size);
/* Adds a chain (device-readable buffers first) and publishes it; -1 when there
 * are too few free descriptors. Call virtq_kick to notify the device. */
int virtq_add(struct virtq* q, const struct virtq_buf* bufs, int n, void* token);
void virtq_kick(struct virtq* q);
/* Returns the token of the next completed chain (and the bytes written), or 0. */
void* virtq_poll(struct virtq* q, uint32_t* len);
/* Polls until the device returns one element, for up to `ms` of running time
 * (rt_timeout); 0 when one came back, -1 on timeout. For queues with one buffer in
 * flight at a time (the transmit buffers of console and net). */
int virtq_wait_used(struct virtq* q, uint64_t ms);
