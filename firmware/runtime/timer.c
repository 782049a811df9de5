/* The TSC rate, measured once and cached, from the first source that works:
 *  1. kvmclock (KVM's paravirtual clock, CPUID 0x40000001 bit 3): the hypervisor
 *     publishes the TSC-to-nanoseconds factor, from which the rate follows
 *     exactly with no waiting; QEMU and any VMM passing KVM's PV CPUID leaves
 *     provide it;
 *  2. the PIT: channel 2 gated through port 0x61, a one-shot count of 11932
 *     ticks at 1.193182 MHz (10 ms), TSC read before and after OUT2 goes high
 *     (QEMU microvm has no port 0x61, hence kvmclock first);
 *  3. CPUID leaf 0x16's base frequency, else an assumed 1 GHz (with a warning).
 * rt_tsc_source() names the one used, so that printed timings can be judged. */
#include "io.h"
#include "runtime.h"

#define PIT_HZ 1193182u
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PORT_B 0x61
#define CAL_TICKS 11932u /* 10 ms */
#define KVM_CPUID_SIGNATURE 0x40000000u
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u

struct pvclock_vcpu_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags;
    uint8_t pad[2];
};

static uint64_t g_khz;
static const char* g_source = "none";
static struct pvclock_vcpu_time_info g_pvclock __attribute__((aligned(64)));

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint64_t from_kvmclock(void)
{
    uint32_t r[4];
    cpuid(KVM_CPUID_SIGNATURE, 0, r);
    /* "KVMKVMKVM\0\0\0" in ebx, ecx, edx. */
    if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d || r[0] < KVM_CPUID_SIGNATURE + 1)
        return 0;
    cpuid(KVM_CPUID_SIGNATURE + 1, 0, r);
    if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
        return 0;
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)&g_pvclock | 1);
    uint32_t mul = 0;
    int8_t shift = 0;
    for (int i = 0; i < 1000 && !mul; ++i) {
        uint32_t version = __atomic_load_n(&g_pvclock.version, __ATOMIC_ACQUIRE);
        if (version & 1)
            continue; /* the hypervisor is mid-update */
        mul = g_pvclock.tsc_to_system_mul;
        shift = g_pvclock.tsc_shift;
        if (__atomic_load_n(&g_pvclock.version, __ATOMIC_ACQUIRE) != version)
            mul = 0;
    }
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0); /* stop the hypervisor writing our memory */
    if (!mul)
        return 0;
    uint64_t khz = (1000000ull << 32) / mul;
    return shift < 0 ? khz << -shift : khz >> shift;
}

static uint64_t from_pit(void)
{
    uint8_t b = inb(PORT_B);
    if (b == 0xff)
        return 0; /* nothing decodes port 0x61 */
    outb(PORT_B, (uint8_t)((b & ~0x02) | 0x01)); /* gate on, speaker off */
    outb(PIT_CMD, 0xb0);                         /* channel 2, lo/hi byte, mode 0, binary */
    outb(PIT_CH2, CAL_TICKS & 0xff);
    outb(PIT_CH2, CAL_TICKS >> 8);
    uint64_t t0 = rdtsc();
    uint64_t polls = 0;
    while (!(inb(PORT_B) & 0x20)) {
        if (++polls > 2000000)
            return 0;
    }
    uint64_t t1 = rdtsc();
    outb(PORT_B, b);
    uint64_t khz = (t1 - t0) * PIT_HZ / CAL_TICKS / 1000;
    return khz < 10000 ? 0 : khz; /* below 10 MHz the gate did not really run */
}

static uint64_t from_cpuid(void)
{
    uint32_t r[4];
    cpuid(0, 0, r);
    if (r[0] < 0x16)
        return 0;
    cpuid(0x16, 0, r);
    return (uint64_t)(r[0] & 0xffff) * 1000;
}

uint64_t rt_tsc_khz(void)
{
    if (g_khz)
        return g_khz;
    if ((g_khz = from_kvmclock()) != 0) {
        g_source = "kvmclock";
    } else if ((g_khz = from_pit()) != 0) {
        g_source = "pit";
    } else if ((g_khz = from_cpuid()) != 0) {
        g_source = "cpuid-0x16";
    } else {
        g_khz = 1000000;
        g_source = "assumed";
        printf("%s: warning: no kvmclock, PIT or CPUID 0x16; assuming the TSC runs at 1 GHz\n", rt_program_name);
    }
    return g_khz;
}

const char* rt_tsc_source(void)
{
    rt_tsc_khz();
    return g_source;
}

uint64_t rt_tsc_to_us(uint64_t ticks)
{
    return ticks * 1000 / rt_tsc_khz();
}

void rt_udelay(uint64_t us)
{
    uint64_t end = rdtsc() + us * rt_tsc_khz() / 1000;
    while (rdtsc() < end)
        cpu_relax();
}

void rt_timeout_start(struct rt_timeout* t, uint64_t ms)
{
    t->left = ms * rt_tsc_khz();
    t->last = rdtsc();
}

bool rt_timeout_expired(struct rt_timeout* t)
{
    uint64_t now = rdtsc();
    uint64_t gap = now - t->last;
    t->last = now;
    if (gap > RT_TIMEOUT_STOP_MS * rt_tsc_khz())
        return false; /* the vCPU was stopped: that time is not the request's */
    t->left = gap < t->left ? t->left - gap : 0;
    return t->left == 0;
}
