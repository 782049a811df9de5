/* vmgenid: reads the VM generation ID the way an OS finds it, and reports when
 * it changes. It follows hvm_start_info's RSDP to the XSDT, the FADT and its
 * X_DSDT, finds the ADDR method in the DSDT's AML (Method (ADDR) { Return
 * (Package () { low, high }) }: the two halves of the ID's guest-physical
 * address, as Linux's vmgenid driver evaluates it) and prints the 16-byte ID.
 * Then it polls the ID every millisecond, forever, and prints every new value:
 * a VM restored from a snapshot of this one must show `vmgenid: changed`.
 * Output: `vmgenid: address 0x...`, `vmgenid: guid <32 hex digits>`,
 * `vmgenid: changed <32 hex digits>`. With `tick_ms=N` it also prints
 * `vmgenid: tick T` every N ms (T counts them), a heartbeat that tells a
 * benchmark the guest runs; with `optional=1` a machine without the device
 * (QEMU microvm) is no failure: it prints `vmgenid: none` and only ticks.
 * Exit codes: 2 no RSDP/XSDT/FADT/DSDT, 3 no ADDR method, 4 an ADDR result
 * this program cannot decode. */
#include "runtime.h"

const char rt_program_name[] = "vmgenid";

static uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t* p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static const uint8_t* find_table(const uint8_t* xsdt, const char* sig)
{
    uint32_t len = rd32(xsdt + 4);
    for (uint32_t off = 36; off + 8 <= len; off += 8) {
        const uint8_t* t = (const uint8_t*)rd64(xsdt + off);
        if (memcmp(t, sig, 4) == 0)
            return t;
    }
    return 0;
}

/* One AML integer (ZeroOp, OneOp, Byte/Word/DWord/QWordConst); advances *p.
 * Returns false for anything else. */
static bool aml_integer(const uint8_t** p, uint64_t* out)
{
    const uint8_t* q = *p;
    switch (q[0]) {
    case 0x00: *out = 0; *p = q + 1; return true;
    case 0x01: *out = 1; *p = q + 1; return true;
    case 0x0a: *out = q[1]; *p = q + 2; return true;
    case 0x0b: *out = (uint64_t)q[1] | (uint64_t)q[2] << 8; *p = q + 3; return true;
    case 0x0c: *out = rd32(q + 1); *p = q + 5; return true;
    case 0x0e: *out = rd64(q + 1); *p = q + 9; return true;
    default: return false;
    }
}

static uint64_t find_guid_address(void)
{
    const uint8_t* rsdp = (const uint8_t*)rt_rsdp_paddr();
    if (cmdline_is("optional", "1") && (!rsdp || memcmp(rsdp, "RSD PTR ", 8) != 0 || rsdp[15] < 2))
        return 0;
    if (!rsdp || memcmp(rsdp, "RSD PTR ", 8) != 0 || rsdp[15] < 2)
        rt_fail(2, "no ACPI 2.0 RSDP in the start info");
    const uint8_t* xsdt = (const uint8_t*)rd64(rsdp + 24);
    if (!xsdt || memcmp(xsdt, "XSDT", 4) != 0)
        rt_fail(2, "no XSDT");
    const uint8_t* fadt = find_table(xsdt, "FACP");
    if (!fadt)
        rt_fail(2, "no FADT");
    const uint8_t* dsdt = (const uint8_t*)rd64(fadt + 140);
    if (!dsdt || memcmp(dsdt, "DSDT", 4) != 0)
        rt_fail(2, "no DSDT");
    uint32_t len = rd32(dsdt + 4);
    /* MethodOp PkgLength(1 byte: the method is small) "ADDR" flags, then
     * ReturnOp PackageOp PkgLength NumElements(2) and the two integers. */
    for (uint32_t i = 36; i + 12 < len; ++i) {
        if (dsdt[i] != 0x14 || memcmp(dsdt + i + 2, "ADDR", 4) != 0)
            continue;
        const uint8_t* p = dsdt + i + 7;
        if (p[0] != 0xa4 || p[1] != 0x12 || p[3] != 2)
            rt_fail(4, "ADDR does not return a two-element package");
        p += 4;
        uint64_t low = 0, high = 0;
        if (!aml_integer(&p, &low) || !aml_integer(&p, &high))
            rt_fail(4, "ADDR's package does not hold two integers");
        return low | high << 32;
    }
    if (cmdline_is("optional", "1"))
        return 0;
    rt_fail(3, "no ADDR method in the DSDT");
    return 0;
}

static void read_guid(uint64_t at, uint64_t out[2])
{
    const volatile uint64_t* g = (const volatile uint64_t*)at;
    out[0] = g[0];
    out[1] = g[1];
}

/* The 16 bytes in memory order, two hex digits each. */
static void print_guid(const char* what, const uint64_t id[2])
{
    printf("vmgenid: %s ", what);
    for (int i = 0; i < 16; ++i)
        printf("%02x", (unsigned)((id[i / 8] >> (8 * (i % 8))) & 0xff));
    printf("\n");
}

int main(const char* cmdline)
{
    (void)cmdline;
    uint64_t const tick_ms = cmdline_u64("tick_ms", 0);
    uint64_t at = find_guid_address();
    uint64_t seen[2] = { 0, 0 };
    if (at == 0) {
        printf("vmgenid: none\n");
    } else {
        printf("vmgenid: address %p\n", (void*)at);
        read_guid(at, seen);
        print_guid("guid", seen);
    }
    for (uint64_t ms = 1, ticks = 0;; ++ms) {
        rt_udelay(1000);
        if (tick_ms != 0 && ms % tick_ms == 0)
            printf("vmgenid: tick %lu\n", (unsigned long)++ticks);
        if (at == 0)
            continue;
        uint64_t now[2];
        read_guid(at, now);
        if (now[0] != seen[0] || now[1] != seen[1]) {
            seen[0] = now[0];
            seen[1] = now[1];
            print_guid("changed", seen);
        }
    }
}
