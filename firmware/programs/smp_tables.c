/* ACPI 6.x section 5.2 (RSDP, RSDT/XSDT, MADT types 0 and 9) and the Intel
 * MultiProcessor Specification 1.4 (floating pointer, configuration table,
 * processor entries). Not implemented: MADT entries other than local APIC and
 * x2APIC, MP extended entries. */
#include "runtime.h"
#include "smp_tables.h"

static uint8_t sum(const void* p, size_t n)
{
    const uint8_t* b = p;
    uint8_t s = 0;
    for (size_t i = 0; i < n; ++i)
        s = (uint8_t)(s + b[i]);
    return s;
}

static uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t* p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Scans [start, start+len) on 16-byte boundaries for a signature whose structure
 * of `csum_len` bytes sums to zero. */
static const uint8_t* scan(uint64_t start, uint64_t len, const char* sig, size_t sig_len, size_t csum_len)
{
    for (uint64_t a = start; a + csum_len <= start + len; a += 16) {
        const uint8_t* p = (const uint8_t*)a;
        if (memcmp(p, sig, sig_len) == 0 && sum(p, csum_len) == 0)
            return p;
    }
    return 0;
}

static const uint8_t* scan_bios_areas(const char* sig, size_t sig_len, size_t csum_len)
{
    uint64_t ebda = (uint64_t)*(const volatile uint16_t*)0x40e << 4;
    const uint8_t* p = 0;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        p = scan(ebda, 1024, sig, sig_len, csum_len);
    if (!p)
        p = scan(0xe0000, 0x20000, sig, sig_len, csum_len);
    return p;
}

static void add_cpu(struct smp_cpus* out, uint32_t apic_id)
{
    if (out->count < SMP_MAX_CPUS)
        out->apic_ids[out->count] = apic_id;
    out->count++;
}

static int parse_madt(const uint8_t* madt, struct smp_cpus* out)
{
    uint32_t len = rd32(madt + 4);
    if (len < 44 || sum(madt, len) != 0)
        return 3;
    out->lapic_base = rd32(madt + 36);
    for (uint32_t off = 44; off + 2 <= len;) {
        uint8_t type = madt[off], elen = madt[off + 1];
        if (elen < 2 || off + elen > len)
            return 4;
        const uint8_t* e = madt + off;
        if (type == 0 && elen >= 8 && (rd32(e + 4) & 1))
            add_cpu(out, e[3]);
        else if (type == 9 && elen >= 16 && (rd32(e + 8) & 1))
            add_cpu(out, rd32(e + 4));
        else if (type == 5 && elen >= 12)
            out->lapic_base = rd64(e + 4); /* local APIC address override */
        off += elen;
    }
    out->source = "acpi-madt";
    return 0;
}

static int find_madt(const uint8_t* rsdp, struct smp_cpus* out)
{
    bool xsdt = rsdp[15] >= 2 && rd64(rsdp + 24) != 0;
    const uint8_t* sdt = (const uint8_t*)(xsdt ? rd64(rsdp + 24) : (uint64_t)rd32(rsdp + 16));
    uint32_t len = rd32(sdt + 4);
    if (memcmp(sdt, xsdt ? "XSDT" : "RSDT", 4) != 0 || len < 36 || sum(sdt, len) != 0)
        return 5;
    size_t width = xsdt ? 8 : 4;
    for (uint32_t off = 36; off + width <= len; off += (uint32_t)width) {
        const uint8_t* t = (const uint8_t*)(xsdt ? rd64(sdt + off) : (uint64_t)rd32(sdt + off));
        if (memcmp(t, "APIC", 4) == 0)
            return parse_madt(t, out);
    }
    return 6;
}

static int parse_mp(const uint8_t* fp, struct smp_cpus* out)
{
    const uint8_t* cfg = (const uint8_t*)(uint64_t)rd32(fp + 4);
    if (!cfg || memcmp(cfg, "PCMP", 4) != 0)
        return 7;
    uint16_t len = (uint16_t)(cfg[4] | cfg[5] << 8);
    uint16_t entries = (uint16_t)(cfg[34] | cfg[35] << 8);
    if (len < 44 || sum(cfg, len) != 0)
        return 8;
    out->lapic_base = rd32(cfg + 36);
    const uint8_t* e = cfg + 44;
    for (uint16_t i = 0; i < entries && e < cfg + len; ++i) {
        if (e[0] == 0) {
            if (e[3] & 1)
                add_cpu(out, e[1]);
            e += 20;
        } else {
            e += 8;
        }
    }
    out->source = "mp-table";
    return 0;
}

int smp_find_cpus(struct smp_cpus* out)
{
    out->count = 0;
    out->lapic_base = 0xfee00000;
    const uint8_t* rsdp = (const uint8_t*)rt_rsdp_paddr();
    if (rsdp && (memcmp(rsdp, "RSD PTR ", 8) != 0 || sum(rsdp, 20) != 0))
        rsdp = 0;
    out->rsdp_from = "start-info";
    if (!rsdp) {
        rsdp = scan_bios_areas("RSD PTR ", 8, 20);
        out->rsdp_from = "bios-scan";
    }
    if (rsdp) {
        int rc = find_madt(rsdp, out);
        if (rc == 0)
            return 0;
        out->count = 0;
    }
    const uint8_t* fp = scan_bios_areas("_MP_", 4, 16);
    if (fp)
        return parse_mp(fp, out);
    return 2;
}
