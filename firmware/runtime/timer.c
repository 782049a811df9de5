/* TSC calibration against the PIT (8254 channel 2, gated through port 0x61, as
 * Linux's quick_pit_calibrate does in spirit): program a one-shot count of 11932
 * ticks at 1.193182 MHz (10 ms), read the TSC before and after OUT2 goes high.
 * The rate is measured once and cached. If the PIT never fires (no PIT), the
 * rate falls back to CPUID leaf 0x16's base frequency or 1 GHz, with a warning. */
#include "io.h"
#include "runtime.h"

#define PIT_HZ 1193182u
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PORT_B 0x61
#define CAL_TICKS 11932u /* 10 ms */

static uint64_t g_khz;

static uint64_t calibrate(void)
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

uint64_t rt_tsc_khz(void)
{
    if (g_khz)
        return g_khz;
    g_khz = calibrate();
    if (!g_khz) {
        uint32_t r[4];
        cpuid(0, 0, r);
        if (r[0] >= 0x16) {
            cpuid(0x16, 0, r);
            g_khz = (uint64_t)(r[0] & 0xffff) * 1000;
        }
        if (!g_khz)
            g_khz = 1000000;
        printf("%s: warning: PIT calibration failed; assuming TSC at %lu kHz\n", rt_program_name,
               (unsigned long)g_khz);
    }
    return g_khz;
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
