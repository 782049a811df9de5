/* The per-transport operations behind virtio.h's vdev_* and virtq_* functions.
 * transport.c dispatches on virtio_dev.transport to mmio.c or pci.c.
 * Threading: BSP only. */
#pragma once

#include "virtio.h"

uint16_t vtrans_queue_max(struct virtio_dev* d, uint16_t index);
/* Programs and enables a queue; returns the address to notify (never 0 on
 * success), or 0 when the device refused. */
uint64_t vtrans_queue_setup(struct virtio_dev* d, uint16_t index, uint16_t size, uint64_t desc, uint64_t avail,
                            uint64_t used);
void vtrans_notify(struct virtio_dev* d, uint64_t notify_addr, uint16_t index);

/* virtio-mmio version 2 */
void vmmio_reset(struct virtio_dev* d);
uint8_t vmmio_status(struct virtio_dev* d);
void vmmio_set_status(struct virtio_dev* d, uint8_t s);
uint32_t vmmio_features(struct virtio_dev* d, uint32_t sel);
void vmmio_set_features(struct virtio_dev* d, uint32_t sel, uint32_t v);
uint32_t vmmio_cfg_generation(struct virtio_dev* d);
uint16_t vmmio_queue_max(struct virtio_dev* d, uint16_t index);
uint64_t vmmio_queue_setup(struct virtio_dev* d, uint16_t index, uint16_t size, uint64_t desc, uint64_t avail,
                           uint64_t used);

/* modern virtio-pci */
void vpci_reset(struct virtio_dev* d);
uint8_t vpci_status(struct virtio_dev* d);
void vpci_set_status(struct virtio_dev* d, uint8_t s);
uint32_t vpci_features(struct virtio_dev* d, uint32_t sel);
void vpci_set_features(struct virtio_dev* d, uint32_t sel, uint32_t v);
uint32_t vpci_cfg_generation(struct virtio_dev* d);
uint16_t vpci_queue_max(struct virtio_dev* d, uint16_t index);
uint64_t vpci_queue_setup(struct virtio_dev* d, uint16_t index, uint16_t size, uint64_t desc, uint64_t avail,
                          uint64_t used);
