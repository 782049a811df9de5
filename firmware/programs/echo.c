/* echo: proves the serial input path. Prints "echo: ready", then copies every byte
 * it receives back to the console until it receives 'q', and exits 0. The tests
 * feed it from a file, a pipe and /dev/null (where it waits until strata is
 * stopped); bench/startup uses the wait to read strata's memory use. */
#include "runtime.h"

const char rt_program_name[] = "echo";

int main(const char* cmdline)
{
    (void)cmdline;
    printf("echo: ready\n");
    for (;;) {
        int c = rt_getc();
        if (c < 0) {
            /* Nothing waiting: idle briefly instead of spinning through exits. */
            rt_udelay(1000);
            continue;
        }
        if (c == 'q')
            break;
        rt_putc((char)c);
    }
    printf("\necho: bye\n");
    return 0;
}
