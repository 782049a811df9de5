/* virtio-mmio version 2 (virtio 1.2 section 4.2.2). Devices are found from the
 * command line's `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` words, the form
 * Linux parses (and QEMU's microvm with acpi=off appends by itself). A version-1
 * (legacy) register block is reported and skipped: QEMU presents one unless given
 * `-global virtio-mmio.force-legacy=false`. */
#include "io.h"
#include "runtime.h"
#include "virtio.h"
#include "virtio_transport.h"

enum {
    MMIO_MAGIC = 0x000,          /* r  MagicValue "virt" */
    MMIO_VERSION = 0x004,        /* r  Version */
    MMIO_DEVICE_ID = 0x008,      /* r  DeviceID */
    MMIO_DEV_FEATURES = 0x010,   /* r  DeviceFeatures */
    MMIO_DEV_FEATURES_SEL = 0x014, /* w DeviceFeaturesSel */
    MMIO_DRV_FEATURES = 0x020,   /* w  DriverFeatures */
    MMIO_DRV_FEATURES_SEL = 0x024, /* w DriverFeaturesSel */
    MMIO_QUEUE_SEL = 0x030,      /* w  QueueSel */
    MMIO_QUEUE_NUM_MAX = 0x034,  /* r  QueueNumMax */
    MMIO_QUEUE_NUM = 0x038,      /* w  QueueNum */
    MMIO_QUEUE_READY = 0x044,    /* rw QueueReady */
    MMIO_QUEUE_NOTIFY = 0x050,   /* w  QueueNotify */
    MMIO_STATUS = 0x070,         /* rw Status */
    MMIO_QUEUE_DESC_LO = 0x080,  /* w  QueueDescLow */
    MMIO_QUEUE_DESC_HI = 0x084,  /* w  QueueDescHigh */
    MMIO_QUEUE_AVAIL_LO = 0x090, /* w  QueueDriverLow */
    MMIO_QUEUE_AVAIL_HI = 0x094, /* w  QueueDriverHigh */
    MMIO_QUEUE_USED_LO = 0x0a0,  /* w  QueueDeviceLow */
    MMIO_QUEUE_USED_HI = 0x0a4,  /* w  QueueDeviceHigh */
    MMIO_CONFIG_GEN = 0x0fc,     /* r  ConfigGeneration */
    MMIO_CONFIG = 0x100,         /* rw device-specific configuration */
};

#define MMIO_MAGIC_VALUE 0x74726976u

static uint32_t rd(struct virtio_dev* d, uint32_t reg) { return mmio_read32(d->mmio_base + reg); }
static void wr(struct virtio_dev* d, uint32_t reg, uint32_t v) { mmio_write32(d->mmio_base + reg, v); }

int virtio_mmio_find(uint32_t device_id, struct virtio_dev* out, int max)
{
    int found = 0;
    size_t cursor = 0;
    const char* v;
    size_t len;
    while (found < max && cmdline_next("virtio_mmio.device", &cursor, &v, &len)) {
        uint64_t size, base;
        size_t n = parse_u64(v, len, &size);
        if (!n || n >= len || v[n] != '@' || !parse_u64(v + n + 1, len - n - 1, &base)) {
            printf("virtio: cannot parse virtio_mmio.device=%.*s\n", (int)len, v);
            continue;
        }
        (void)size;
        struct virtio_dev* d = &out[found];
        memset(d, 0, sizeof(*d));
        d->transport = VIRTIO_MMIO;
        d->mmio_base = base;
        if (rd(d, MMIO_MAGIC) != MMIO_MAGIC_VALUE) {
            printf("virtio: no virtio-mmio device at %p\n", (void*)base);
            continue;
        }
        uint32_t id = rd(d, MMIO_DEVICE_ID);
        if (id != device_id)
            continue; /* another kind of device, or an empty slot (id 0) */
        uint32_t version = rd(d, MMIO_VERSION);
        if (version != 2) {
            printf("virtio: mmio@%p is version %u (legacy); only version 2 is supported\n", (void*)base, version);
            continue;
        }
        d->device_id = id;
        snprintf(d->name, sizeof(d->name), "mmio@%p", (void*)base);
        ++found;
    }
    return found;
}

void vmmio_reset(struct virtio_dev* d)
{
    wr(d, MMIO_STATUS, 0);
    for (int i = 0; i < 100000 && rd(d, MMIO_STATUS) != 0; ++i)
        cpu_relax();
}

uint8_t vmmio_status(struct virtio_dev* d) { return (uint8_t)rd(d, MMIO_STATUS); }
void vmmio_set_status(struct virtio_dev* d, uint8_t s) { wr(d, MMIO_STATUS, s); }

uint32_t vmmio_features(struct virtio_dev* d, uint32_t sel)
{
    wr(d, MMIO_DEV_FEATURES_SEL, sel);
    return rd(d, MMIO_DEV_FEATURES);
}

void vmmio_set_features(struct virtio_dev* d, uint32_t sel, uint32_t v)
{
    wr(d, MMIO_DRV_FEATURES_SEL, sel);
    wr(d, MMIO_DRV_FEATURES, v);
}

uint32_t vmmio_cfg_generation(struct virtio_dev* d) { return rd(d, MMIO_CONFIG_GEN); }

uint16_t vmmio_queue_max(struct virtio_dev* d, uint16_t index)
{
    wr(d, MMIO_QUEUE_SEL, index);
    if (rd(d, MMIO_QUEUE_READY))
        return 0; /* already in use: the device was not reset */
    uint32_t max = rd(d, MMIO_QUEUE_NUM_MAX);
    return (uint16_t)(max > 32768 ? 32768 : max);
}

uint64_t vmmio_queue_setup(struct virtio_dev* d, uint16_t index, uint16_t size, uint64_t desc, uint64_t avail,
                           uint64_t used)
{
    wr(d, MMIO_QUEUE_SEL, index);
    wr(d, MMIO_QUEUE_NUM, size);
    wr(d, MMIO_QUEUE_DESC_LO, (uint32_t)desc);
    wr(d, MMIO_QUEUE_DESC_HI, (uint32_t)(desc >> 32));
    wr(d, MMIO_QUEUE_AVAIL_LO, (uint32_t)avail);
    wr(d, MMIO_QUEUE_AVAIL_HI, (uint32_t)(avail >> 32));
    wr(d, MMIO_QUEUE_USED_LO, (uint32_t)used);
    wr(d, MMIO_QUEUE_USED_HI, (uint32_t)(used >> 32));
    wr(d, MMIO_QUEUE_READY, 1);
    if (rd(d, MMIO_QUEUE_READY) != 1)
        return 0;
    return d->mmio_base + MMIO_QUEUE_NOTIFY;
}
