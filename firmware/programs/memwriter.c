/* memwriter: a guest whose RAM holds a known pattern, for memory snapshot tests.
 * It fills mb= MiB (32) with a pattern that depends on each page's number and
 * generation, then every period_ms= (10) rewrites touch= (4) pages with their
 * next generation, walking through the region, and keeps the generations in a
 * table of its own (in RAM too). Every check_every= (10) rounds it checks every
 * page against the table (three words of each), so a restore that lost or mixed
 * up any page of the region or the table fails the next check. rounds= (0: forever) ends it.
 * Output: "memwriter: filled N pages", "memwriter: round R ok" after each check,
 * "memwriter: done rounds N"; a wrong page: "memwriter: FAIL: ..." and exit 2. */
#include "runtime.h"

const char rt_program_name[] = "memwriter";

#define PAGE 4096u
#define WORDS (PAGE / 8u)

static uint64_t pattern(uint64_t page, uint64_t word, uint64_t gen)
{
    return ((page << 32) | word) * 0x9E3779B97F4A7C15ull + gen * 0xD6E8FEB86659FD93ull + 1;
}

/* Generation 0 writes a page's first and last words only (guest code runs at
 * about a million instructions per second under emulation, so a fill of every
 * word of 32 MiB would take a minute); later generations write every word. */
static void fill(uint64_t* region, uint64_t page, uint64_t gen)
{
    uint64_t* p = region + page * WORDS;
    if (gen == 0) {
        p[0] = pattern(page, 0, 0);
        p[WORDS - 1] = pattern(page, WORDS - 1, 0);
        return;
    }
    for (uint64_t w = 0; w < WORDS; ++w)
        p[w] = pattern(page, w, gen);
}

static void check_word(const uint64_t* p, uint64_t page, uint64_t w, uint32_t gen, uint64_t round)
{
    if (p[w] != pattern(page, w, gen))
        rt_fail(2, "round %lu: page %lu word %lu (generation %u) holds %lx, expected %lx", (unsigned long)round,
            (unsigned long)page, (unsigned long)w, gen, (unsigned long)p[w], (unsigned long)pattern(page, w, gen));
}

/* Every page's first and last words, and one more that moves with the round. */
static void check(const uint64_t* region, const uint32_t* gens, uint64_t pages, uint64_t round)
{
    for (uint64_t page = 0; page < pages; ++page) {
        const uint64_t* p = region + page * WORDS;
        check_word(p, page, 0, gens[page], round);
        check_word(p, page, WORDS - 1, gens[page], round);
        if (gens[page] != 0)
            check_word(p, page, (round * 37 + page) % WORDS, gens[page], round);
    }
}

int main(const char* cmdline)
{
    (void)cmdline;
    uint64_t mb = cmdline_u64("mb", 32);
    uint64_t touch = cmdline_u64("touch", 4);
    uint64_t period_ms = cmdline_u64("period_ms", 10);
    uint64_t check_every = cmdline_u64("check_every", 10);
    uint64_t rounds = cmdline_u64("rounds", 0);
    if (mb == 0 || touch == 0 || check_every == 0)
        rt_fail(3, "mb, touch and check_every must be at least 1");
    uint64_t pages = mb * 1024 * 1024 / PAGE;
    uint64_t* region = rt_alloc(pages * PAGE, PAGE);
    uint32_t* gens = rt_alloc(pages * sizeof(uint32_t), PAGE);
    for (uint64_t page = 0; page < pages; ++page) {
        gens[page] = 0;
        fill(region, page, 0);
    }
    printf("memwriter: filled %lu pages, touch %lu every %lu ms\n", (unsigned long)pages, (unsigned long)touch,
        (unsigned long)period_ms);
    uint64_t next = 0;
    for (uint64_t round = 1; rounds == 0 || round <= rounds; ++round) {
        for (uint64_t k = 0; k < touch; ++k) {
            uint64_t page = next;
            next = (next + 1) % pages;
            gens[page] += 1;
            fill(region, page, gens[page]);
        }
        if (round % check_every == 0) {
            check(region, gens, pages, round);
            printf("memwriter: round %lu ok\n", (unsigned long)round);
        }
        rt_udelay(period_ms * 1000);
    }
    printf("memwriter: done rounds %lu\n", (unsigned long)rounds);
    return 0;
}
