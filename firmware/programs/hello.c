/* hello: the smallest guest. Prints a greeting and the command line it was
 * given, then exits 0. Used by the walking-skeleton tests and bench/startup. */
#include "runtime.h"

const char rt_program_name[] = "hello";

int main(const char* cmdline)
{
    printf("hello from strata firmware\n");
    printf("cmdline: %s\n", cmdline);
    return 0;
}
