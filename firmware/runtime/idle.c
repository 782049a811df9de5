/* Waiting without spinning. The programs poll their devices (no device interrupt is
 * wired), and a vCPU that spins keeps its host thread busy for the whole wait. On
 * hardware KVM a request takes microseconds and the spin costs little; inside an
 * emulated machine (scripts/with-kvm) a request takes milliseconds, and guests
 * spinning there take the machine's two CPUs from the VMM I/O threads that would
 * finish their requests and from everything else the tests run (31 kvm tests took
 * 28% less CPU time there once their guests halted). So a program that calls rt_idle_enable() gets a periodic LAPIC timer, and a wait
 * turn (rt_wait_turn) spins for the first RT_SPIN_US of a wait, then halts until
 * the next tick (or any interrupt): the vCPU's thread then sleeps in KVM.
 *
 * The timer counts at a rate calibrated against the TSC, so a tick is about a
 * millisecond whatever bus rate the hypervisor emulates. Interrupts are enabled
 * only inside `sti; hlt`: the STI shadow lets a tick that is already pending end
 * that HLT instead of being lost before it. The LAPIC's timer state is part of a
 * vCPU's saved state, so a restored guest keeps ticking. */
#include "io.h"
#include "runtime.h"

#define LAPIC_BASE 0xfee00000ul
#define LAPIC_SVR 0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)
#define SVR_ENABLE (1u << 8)
#define DIVIDE_BY_1 0xb

/* Long enough to cover a request on hardware KVM, so that there a wait never halts. */
#define RT_SPIN_US 100

static bool g_idle;
static uint64_t g_spin_ticks;

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

void rt_idle_enable(void)
{
    /* idle=0 on the command line keeps every wait spinning (for comparisons). */
    if (g_idle || cmdline_u64("idle", 1) == 0)
        return;
    rt_install_traps(); /* the IDT holds the tick's and the spurious vector's entries */
    /* The VMM wires LINT0 to the 8259 PIC (ExtINT), and the devices' interrupt lines
     * reach the PIC, whose vectors nobody programmed (an IRQ 5 arrived as vector 5).
     * These programs take no device interrupt: mask LINT0. The LAPIC's registers
     * are saved with the vCPU, so a restored guest keeps the mask. */
    lapic_write(LAPIC_LVT_LINT0, lapic_read(LAPIC_LVT_LINT0) | LVT_MASKED);
    lapic_write(LAPIC_SVR, SVR_ENABLE | RT_SPURIOUS_VECTOR);
    lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_1);
    /* Calibrate: a masked one-shot count for a millisecond of TSC. */
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | RT_TICK_VECTOR);
    lapic_write(LAPIC_TIMER_INITIAL, 0xffffffffu);
    rt_udelay(1000);
    uint32_t per_ms = 0xffffffffu - lapic_read(LAPIC_TIMER_CURRENT);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    if (per_ms == 0 || per_ms == 0xffffffffu) {
        printf("%s: the LAPIC timer does not count; waits spin\n", rt_program_name);
        return;
    }
    lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | RT_TICK_VECTOR);
    lapic_write(LAPIC_TIMER_INITIAL, per_ms);
    g_spin_ticks = RT_SPIN_US * rt_tsc_khz() / 1000;
    g_idle = true;
}

bool rt_idle_enabled(void) { return g_idle; }

void rt_idle_tick(void)
{
    if (g_idle)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    else
        rt_udelay(1000);
}

void rt_wait_turn(uint64_t since)
{
    if (g_idle && rdtsc() - since > g_spin_ticks)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    else
        cpu_relax();
}
