/* reboot: asks the i8042 keyboard controller to pulse the CPU reset line
 * (command 0xfe on port 0x64), as Linux's `reboot=k` does. A VMM either ends the
 * VM or restarts it; if execution continues past the reset, the controller is
 * missing or ignored the command, and the program exits 1. */
#include "io.h"
#include "runtime.h"

const char rt_program_name[] = "reboot";

int main(const char* cmdline)
{
    (void)cmdline;
    printf("reboot: resetting through the i8042\n");
    /* Wait (bounded) for the controller's input buffer to drain, as a real
     * driver must before sending a command. */
    for (int i = 0; i < 1000 && (inb(0x64) & 0x02); ++i)
        cpu_relax();
    outb(0x64, 0xfe);
    /* The reset takes effect at the VMM's next look at the vCPU; give it a moment
     * before declaring failure. */
    for (int i = 0; i < 100000; ++i)
        cpu_relax();
    rt_fail(1, "still running after the i8042 reset command");
}
