/* Modern virtio-pci (virtio 1.2 section 4.1): configuration space through the
 * legacy mechanism at ports 0xCF8/0xCFC, bus 0 only; the vendor capabilities
 * locate the common, notify and device structures in memory BARs. A BAR that is
 * still zero (QEMU's q35 with a PVH kernel may leave them unassigned) is sized
 * and placed from 0xe0000000 upward, inside the 32-bit MMIO hole; BARs that the
 * VMM or a BIOS assigned are kept. Memory space and bus mastering are enabled.
 * Not implemented: bridges (only bus 0 is scanned), I/O BARs, MSI-X. */
#include "io.h"
#include "runtime.h"
#include "virtio.h"
#include "virtio_transport.h"

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_CAP_VENDOR 0x09
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_DEVICE 4

enum {
    COMMON_DFSELECT = 0x00,  /* rw device_feature_select */
    COMMON_DF = 0x04,        /* r  device_feature */
    COMMON_GFSELECT = 0x08,  /* rw driver_feature_select */
    COMMON_GF = 0x0c,        /* rw driver_feature */
    COMMON_NUMQ = 0x12,      /* r  num_queues */
    COMMON_STATUS = 0x14,    /* rw device_status */
    COMMON_CFGGEN = 0x15,    /* r  config_generation */
    COMMON_Q_SELECT = 0x16,  /* rw queue_select */
    COMMON_Q_SIZE = 0x18,    /* rw queue_size */
    COMMON_Q_MSIX = 0x1a,    /* rw queue_msix_vector */
    COMMON_Q_ENABLE = 0x1c,  /* rw queue_enable */
    COMMON_Q_NOFF = 0x1e,    /* r  queue_notify_off */
    COMMON_Q_DESC = 0x20,    /* rw queue_desc */
    COMMON_Q_AVAIL = 0x28,   /* rw queue_driver */
    COMMON_Q_USED = 0x30,    /* rw queue_device */
};

static uint64_t g_next_bar = 0xe0000000;

static uint32_t cfg_addr(struct virtio_dev* d, uint8_t off)
{
    return 0x80000000u | (uint32_t)d->bus << 16 | (uint32_t)d->slot << 11 | (uint32_t)d->func << 8 | (off & 0xfcu);
}

static uint32_t cfg_read32(struct virtio_dev* d, uint8_t off)
{
    outl(0xcf8, cfg_addr(d, off));
    return inl(0xcfc);
}

static void cfg_write32(struct virtio_dev* d, uint8_t off, uint32_t v)
{
    outl(0xcf8, cfg_addr(d, off));
    outl(0xcfc, v);
}

static uint8_t cfg_read8(struct virtio_dev* d, uint8_t off) { return (uint8_t)(cfg_read32(d, off) >> ((off & 3) * 8)); }

/* Returns the BAR's memory address, assigning one if it has none; 0 if the BAR
 * is not a memory BAR. */
static uint64_t bar_address(struct virtio_dev* d, uint8_t bar)
{
    uint8_t off = (uint8_t)(0x10 + 4 * bar);
    uint32_t lo = cfg_read32(d, off);
    if (lo & 1)
        return 0; /* I/O BAR */
    bool is64 = ((lo >> 1) & 3) == 2;
    uint64_t addr = (lo & ~0xfu) | (is64 ? (uint64_t)cfg_read32(d, (uint8_t)(off + 4)) << 32 : 0);
    if (addr)
        return addr;
    /* Size it with memory decoding off, then place it naturally aligned. */
    uint32_t cmd = cfg_read32(d, 0x04);
    cfg_write32(d, 0x04, cmd & ~0x2u);
    cfg_write32(d, off, 0xffffffffu);
    uint32_t mask = cfg_read32(d, off) & ~0xfu;
    uint64_t size = (uint64_t)(~mask) + 1;
    if (is64) {
        cfg_write32(d, (uint8_t)(off + 4), 0xffffffffu);
        uint32_t hi = cfg_read32(d, (uint8_t)(off + 4));
        if (hi != 0xffffffffu)
            rt_fail(41, "%s: BAR%u larger than 4 GiB", d->name, bar);
        size = (uint32_t)(~mask) + 1ull;
    }
    if (!mask)
        return 0;
    addr = (g_next_bar + size - 1) & ~(size - 1);
    g_next_bar = addr + size;
    cfg_write32(d, off, (uint32_t)addr | (lo & 0xf));
    if (is64)
        cfg_write32(d, (uint8_t)(off + 4), (uint32_t)(addr >> 32));
    cfg_write32(d, 0x04, cmd);
    printf("virtio: %s BAR%u assigned %p (%lu KiB)\n", d->name, bar, (void*)addr, (unsigned long)(size >> 10));
    return addr;
}

/* Walks the capability list for the common, notify and device structures. */
static bool map_caps(struct virtio_dev* d)
{
    if (!(cfg_read32(d, 0x04) & (1u << 20)))
        return false; /* no capability list */
    uint8_t ptr = cfg_read8(d, 0x34) & 0xfc;
    for (int guard = 0; ptr && guard < 48; ++guard) {
        uint32_t w0 = cfg_read32(d, ptr);
        uint8_t next = (uint8_t)(w0 >> 8) & 0xfc;
        if ((w0 & 0xff) == PCI_CAP_VENDOR) {
            uint8_t type = (uint8_t)(w0 >> 24);
            uint8_t bar = cfg_read8(d, (uint8_t)(ptr + 4));
            uint32_t offset = cfg_read32(d, (uint8_t)(ptr + 8));
            if (bar <= 5 && (type == CAP_COMMON || type == CAP_NOTIFY || type == CAP_DEVICE)) {
                uint64_t base = bar_address(d, bar);
                if (base) {
                    if (type == CAP_COMMON && !d->common_cfg)
                        d->common_cfg = base + offset;
                    if (type == CAP_NOTIFY && !d->notify_base) {
                        d->notify_base = base + offset;
                        d->notify_mult = cfg_read32(d, (uint8_t)(ptr + 16));
                    }
                    if (type == CAP_DEVICE && !d->device_cfg)
                        d->device_cfg = base + offset;
                }
            }
        }
        ptr = next;
    }
    return d->common_cfg && d->notify_base;
}

int virtio_pci_find(uint32_t device_id, struct virtio_dev* out, int max)
{
    int found = 0;
    for (uint8_t slot = 0; slot < 32 && found < max; ++slot) {
        for (uint8_t func = 0; func < 8 && found < max; ++func) {
            struct virtio_dev* d = &out[found];
            memset(d, 0, sizeof(*d));
            d->transport = VIRTIO_PCI;
            d->slot = slot;
            d->func = func;
            uint32_t id = cfg_read32(d, 0x00);
            if ((id & 0xffff) == 0xffff) {
                if (func == 0)
                    break; /* no device in this slot */
                continue;
            }
            bool multifunction = func == 0 && (cfg_read8(d, 0x0e) & 0x80);
            uint16_t vendor = (uint16_t)id, device = (uint16_t)(id >> 16);
            /* Modern devices are 0x1040 + type; transitional ones 0x1000-0x103f
             * carry the type in the subsystem id. */
            bool match = vendor == PCI_VENDOR_VIRTIO
                && (device == 0x1040 + device_id
                    || (device >= 0x1000 && device <= 0x103f && (cfg_read32(d, 0x2c) >> 16) == device_id));
            if (match) {
                snprintf(d->name, sizeof(d->name), "pci 00:%02x.%x", slot, func);
                if (cmdline_is("pci_bars", "reset")) {
                    /* Test aid: forget what a BIOS assigned, to exercise the
                     * placement path that a BIOS-less VMM relies on. */
                    cfg_write32(d, 0x04, cfg_read32(d, 0x04) & 0xfff9u);
                    for (uint8_t b = 0; b < 6; ++b)
                        cfg_write32(d, (uint8_t)(0x10 + 4 * b), 0);
                }
                if (map_caps(d)) {
                    uint32_t cmd = cfg_read32(d, 0x04);
                    cfg_write32(d, 0x04, (cmd & 0xffff) | 0x6); /* memory space, bus master */
                    d->device_id = device_id;
                    ++found;
                } else {
                    printf("virtio: %s has no modern virtio capabilities; skipped\n", d->name);
                }
            }
            if (func == 0 && !multifunction)
                break;
        }
    }
    return found;
}

static uint64_t common(struct virtio_dev* d, uint32_t off) { return d->common_cfg + off; }

void vpci_reset(struct virtio_dev* d)
{
    mmio_write8(common(d, COMMON_STATUS), 0);
    for (int i = 0; i < 100000 && mmio_read8(common(d, COMMON_STATUS)) != 0; ++i)
        cpu_relax();
}

uint8_t vpci_status(struct virtio_dev* d) { return mmio_read8(common(d, COMMON_STATUS)); }
void vpci_set_status(struct virtio_dev* d, uint8_t s) { mmio_write8(common(d, COMMON_STATUS), s); }

uint32_t vpci_features(struct virtio_dev* d, uint32_t sel)
{
    mmio_write32(common(d, COMMON_DFSELECT), sel);
    return mmio_read32(common(d, COMMON_DF));
}

void vpci_set_features(struct virtio_dev* d, uint32_t sel, uint32_t v)
{
    mmio_write32(common(d, COMMON_GFSELECT), sel);
    mmio_write32(common(d, COMMON_GF), v);
}

uint32_t vpci_cfg_generation(struct virtio_dev* d) { return mmio_read8(common(d, COMMON_CFGGEN)); }

uint16_t vpci_queue_max(struct virtio_dev* d, uint16_t index)
{
    if (index >= mmio_read16(common(d, COMMON_NUMQ)))
        return 0;
    mmio_write16(common(d, COMMON_Q_SELECT), index);
    return mmio_read16(common(d, COMMON_Q_SIZE));
}

static void write64(uint64_t addr, uint64_t v)
{
    mmio_write32(addr, (uint32_t)v);
    mmio_write32(addr + 4, (uint32_t)(v >> 32));
}

uint64_t vpci_queue_setup(struct virtio_dev* d, uint16_t index, uint16_t size, uint64_t desc, uint64_t avail,
                          uint64_t used)
{
    mmio_write16(common(d, COMMON_Q_SELECT), index);
    mmio_write16(common(d, COMMON_Q_SIZE), size);
    mmio_write16(common(d, COMMON_Q_MSIX), 0xffff); /* VIRTIO_MSI_NO_VECTOR: we poll */
    write64(common(d, COMMON_Q_DESC), desc);
    write64(common(d, COMMON_Q_AVAIL), avail);
    write64(common(d, COMMON_Q_USED), used);
    uint16_t noff = mmio_read16(common(d, COMMON_Q_NOFF));
    mmio_write16(common(d, COMMON_Q_ENABLE), 1);
    if (mmio_read16(common(d, COMMON_Q_ENABLE)) != 1)
        return 0;
    return d->notify_base + (uint64_t)noff * d->notify_mult;
}
