/* Dispatch of the generic virtio operations to the two transports, feature
 * negotiation (virtio 1.2 section 3.1.1) and device discovery. */
#include "io.h"
#include "runtime.h"
#include "virtio.h"
#include "virtio_transport.h"

#define IS_MMIO(d) ((d)->transport == VIRTIO_MMIO)

void vdev_reset(struct virtio_dev* d) { IS_MMIO(d) ? vmmio_reset(d) : vpci_reset(d); }
uint8_t vdev_status(struct virtio_dev* d) { return IS_MMIO(d) ? vmmio_status(d) : vpci_status(d); }
void vdev_set_status(struct virtio_dev* d, uint8_t s) { IS_MMIO(d) ? vmmio_set_status(d, s) : vpci_set_status(d, s); }

uint64_t vdev_features(struct virtio_dev* d)
{
    uint32_t lo = IS_MMIO(d) ? vmmio_features(d, 0) : vpci_features(d, 0);
    uint32_t hi = IS_MMIO(d) ? vmmio_features(d, 1) : vpci_features(d, 1);
    return (uint64_t)hi << 32 | lo;
}

void vdev_set_features(struct virtio_dev* d, uint64_t f)
{
    if (IS_MMIO(d)) {
        vmmio_set_features(d, 0, (uint32_t)f);
        vmmio_set_features(d, 1, (uint32_t)(f >> 32));
    } else {
        vpci_set_features(d, 0, (uint32_t)f);
        vpci_set_features(d, 1, (uint32_t)(f >> 32));
    }
}

static uint64_t cfg_base(struct virtio_dev* d) { return IS_MMIO(d) ? d->mmio_base + 0x100 : d->device_cfg; }
static uint32_t generation(struct virtio_dev* d) { return IS_MMIO(d) ? vmmio_cfg_generation(d) : vpci_cfg_generation(d); }

uint8_t vdev_cfg_read8(struct virtio_dev* d, uint32_t off) { return mmio_read8(cfg_base(d) + off); }
uint32_t vdev_cfg_read32(struct virtio_dev* d, uint32_t off) { return mmio_read32(cfg_base(d) + off); }

uint64_t vdev_cfg_read64(struct virtio_dev* d, uint32_t off)
{
    /* Two 32-bit reads may straddle a config change; retry until the
     * generation counter is stable around them. */
    for (;;) {
        uint32_t g = generation(d);
        uint64_t v = mmio_read32(cfg_base(d) + off) | (uint64_t)mmio_read32(cfg_base(d) + off + 4) << 32;
        if (generation(d) == g)
            return v;
    }
}

uint16_t vtrans_queue_max(struct virtio_dev* d, uint16_t index)
{
    return IS_MMIO(d) ? vmmio_queue_max(d, index) : vpci_queue_max(d, index);
}

uint64_t vtrans_queue_setup(struct virtio_dev* d, uint16_t index, uint16_t size, uint64_t desc, uint64_t avail,
                            uint64_t used)
{
    return IS_MMIO(d) ? vmmio_queue_setup(d, index, size, desc, avail, used)
                      : vpci_queue_setup(d, index, size, desc, avail, used);
}

void vtrans_notify(struct virtio_dev* d, uint64_t notify_addr, uint16_t index)
{
    if (IS_MMIO(d))
        mmio_write32(notify_addr, index);
    else
        mmio_write16(notify_addr, index);
}

uint64_t vdev_negotiate(struct virtio_dev* d, uint64_t wanted)
{
    vdev_reset(d);
    vdev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    vdev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    uint64_t offered = vdev_features(d);
    if (!(offered & VIRTIO_F_VERSION_1)) {
        printf("virtio: %s does not offer VIRTIO_F_VERSION_1\n", d->name);
        vdev_set_status(d, VIRTIO_STATUS_FAILED);
        return 0;
    }
    uint64_t accepted = offered & (wanted | VIRTIO_F_VERSION_1);
    vdev_set_features(d, accepted);
    vdev_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(vdev_status(d) & VIRTIO_STATUS_FEATURES_OK)) {
        printf("virtio: %s refused features 0x%lx\n", d->name, (unsigned long)accepted);
        vdev_set_status(d, VIRTIO_STATUS_FAILED);
        return 0;
    }
    return accepted;
}

int virtio_find(uint32_t device_id, struct virtio_dev* out, int max)
{
    bool want_mmio = !cmdline_is("transport", "pci");
    bool want_pci = !cmdline_is("transport", "mmio");
    int n = 0;
    if (want_mmio)
        n += virtio_mmio_find(device_id, out + n, max - n);
    if (want_pci && n < max)
        n += virtio_pci_find(device_id, out + n, max - n);
    return n;
}
