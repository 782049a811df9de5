/* smp: finds the CPUs the platform lists (ACPI MADT, else the MP table), starts
 * every application processor with INIT, SIPI, SIPI through the local APIC
 * (Intel SDM vol. 3 section 8.4.4), lets each one reach long mode and check in by
 * incrementing a counter, and prints `cpus: N` with N = the BSP plus the APs that
 * checked in. Exits 0 when N equals the number of CPUs listed. */
#include "io.h"
#include "runtime.h"
#include "smp_tables.h"

const char rt_program_name[] = "smp";

#define SMP_TRAMPOLINE_BASE 0x8000u
#define AP_STACK_SIZE 8192u
#define LAPIC_ID 0x20
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_PENDING (1u << 12)
#define ICR_INIT 0x4500u  /* INIT, level assert */
#define ICR_SIPI 0x4600u  /* start-up, vector in the low byte */

extern char smp_trampoline_start[], smp_trampoline_end[];
uint64_t smp_stack_cursor;
static volatile uint32_t g_checked_in;

void smp_ap_main(void)
{
    __atomic_fetch_add(&g_checked_in, 1, __ATOMIC_SEQ_CST);
}

static void send_ipi(uint64_t lapic, uint32_t apic_id, uint32_t icr)
{
    for (int i = 0; i < 100000 && (mmio_read32(lapic + LAPIC_ICR_LO) & ICR_PENDING); ++i)
        cpu_relax();
    mmio_write32(lapic + LAPIC_ICR_HI, apic_id << 24);
    mmio_write32(lapic + LAPIC_ICR_LO, icr);
}

static bool ram_below_1m(uint64_t addr, uint64_t len)
{
    for (size_t i = 0; i < rt_memmap_count(); ++i) {
        const struct rt_mem_range* r = rt_memmap(i);
        if (r->type == 1 && addr >= r->addr && addr + len <= r->addr + r->size)
            return true;
    }
    return rt_memmap_count() == 0;
}

int main(const char* cmdline)
{
    (void)cmdline;
    static struct smp_cpus cpus;
    int rc = smp_find_cpus(&cpus);
    if (rc)
        rt_fail(2, "no ACPI MADT or MP table found (reason %d)", rc);
    uint64_t lapic = cpus.lapic_base;
    uint32_t bsp_id = mmio_read32(lapic + LAPIC_ID) >> 24;
    printf("smp: %s%s%s lists %u cpus, bsp apic id %u, lapic at %p\n", cpus.source,
           cpus.source[0] == 'a' ? " via rsdp from " : "", cpus.source[0] == 'a' ? cpus.rsdp_from : "", cpus.count,
           bsp_id, (void*)lapic);
    if (cpus.count > SMP_MAX_CPUS)
        rt_fail(3, "more than %d cpus listed", SMP_MAX_CPUS);

    size_t tramp_len = (size_t)(smp_trampoline_end - smp_trampoline_start);
    if (!ram_below_1m(SMP_TRAMPOLINE_BASE, 4096))
        rt_fail(4, "the trampoline page 0x%x is not RAM", SMP_TRAMPOLINE_BASE);
    memcpy((void*)(uint64_t)SMP_TRAMPOLINE_BASE, smp_trampoline_start, tramp_len);
    smp_stack_cursor = (uint64_t)rt_alloc((uint64_t)cpus.count * AP_STACK_SIZE, 4096);

    mmio_write32(lapic + LAPIC_SVR, 0x1ff); /* software-enable the BSP's APIC */
    uint32_t aps = 0;
    for (uint32_t i = 0; i < cpus.count; ++i) {
        uint32_t id = cpus.apic_ids[i];
        if (id == bsp_id)
            continue;
        ++aps;
        send_ipi(lapic, id, ICR_INIT);
        rt_udelay(10000);
        for (int n = 0; n < 2; ++n) {
            send_ipi(lapic, id, ICR_SIPI | (SMP_TRAMPOLINE_BASE >> 12));
            rt_udelay(200);
        }
    }
    /* Each AP executes a few dozen instructions; allow a generous second each,
     * since guest code may be emulated. */
    uint64_t deadline = rdtsc() + (aps + 1) * 1000 * rt_tsc_khz();
    while (__atomic_load_n(&g_checked_in, __ATOMIC_SEQ_CST) < aps && rdtsc() < deadline)
        cpu_relax();
    uint32_t n = 1 + __atomic_load_n(&g_checked_in, __ATOMIC_SEQ_CST);
    printf("cpus: %u\n", n);
    if (cmdline_is("verbose", "1"))
        printf("smp: tsc %lu kHz from %s\n", (unsigned long)rt_tsc_khz(), rt_tsc_source());
    if (n != cpus.count)
        rt_fail(1, "%u of %u listed cpus checked in", n, cpus.count);
    return 0;
}
