/* Start of day in C: validates hvm_start_info, copies the command line, memory
 * map and module list out of it (the loader's copies may sit in memory that the
 * programs later reuse, e.g. the SMP trampoline page), then runs main() and hands
 * its value to the exit port. Also owns the RAM bump allocator. */
#include "io.h"
#include "runtime.h"

#define MAX_CMDLINE 4096
#define MAX_MEMMAP 64
#define MAX_MODULES 8
#define E820_RAM 1

extern char __image_end[];

static char g_cmdline[MAX_CMDLINE];
static struct rt_mem_range g_memmap[MAX_MEMMAP];
static size_t g_memmap_count;
static struct hvm_modlist_entry g_modules[MAX_MODULES];
static size_t g_module_count;
static uint64_t g_rsdp;
static uint32_t g_version;
static uint64_t g_alloc_next;

const char* rt_cmdline(void) { return g_cmdline; }
size_t rt_memmap_count(void) { return g_memmap_count; }
const struct rt_mem_range* rt_memmap(size_t i) { return i < g_memmap_count ? &g_memmap[i] : 0; }
size_t rt_module_count(void) { return g_module_count; }
const struct hvm_modlist_entry* rt_module(size_t i) { return i < g_module_count ? &g_modules[i] : 0; }
uint64_t rt_rsdp_paddr(void) { return g_rsdp; }
uint32_t rt_start_info_version(void) { return g_version; }

void rt_start(const struct hvm_start_info* info)
{
    if (!info || info->magic != HVM_START_MAGIC)
        rt_fail(60, "no hvm_start_info (bad magic); was this booted through PVH?");
    g_version = info->version;
    g_rsdp = info->rsdp_paddr;
    if (info->cmdline_paddr) {
        const char* src = (const char*)info->cmdline_paddr;
        size_t i = 0;
        for (; i + 1 < MAX_CMDLINE && src[i]; ++i)
            g_cmdline[i] = src[i];
        g_cmdline[i] = '\0';
    }
    if (info->version >= 1 && info->memmap_paddr) {
        const struct hvm_memmap_table_entry* e = (const struct hvm_memmap_table_entry*)info->memmap_paddr;
        for (uint32_t i = 0; i < info->memmap_entries && g_memmap_count < MAX_MEMMAP; ++i) {
            if (e[i].size == 0)
                continue; /* QEMU's PVH table can end with an empty entry */
            g_memmap[g_memmap_count].addr = e[i].addr;
            g_memmap[g_memmap_count].size = e[i].size;
            g_memmap[g_memmap_count].type = e[i].type;
            ++g_memmap_count;
        }
    }
    if (info->modlist_paddr) {
        const struct hvm_modlist_entry* m = (const struct hvm_modlist_entry*)info->modlist_paddr;
        for (uint32_t i = 0; i < info->nr_modules && g_module_count < MAX_MODULES; ++i)
            g_modules[g_module_count++] = m[i];
    }
    g_alloc_next = (uint64_t)__image_end;
    rt_exit((uint32_t)main(g_cmdline));
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

void* rt_alloc(uint64_t size, uint64_t align)
{
    if (align < 4096)
        align = 4096;
    size = (size + 4095) & ~(uint64_t)4095;
    uint64_t at = (g_alloc_next + align - 1) & ~(align - 1);
    /* Step past modules (an initrd sits in RAM the allocator would otherwise use). */
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < g_module_count; ++i) {
            if (overlaps(at, size, g_modules[i].paddr, g_modules[i].size)) {
                at = (g_modules[i].paddr + g_modules[i].size + align - 1) & ~(align - 1);
                moved = true;
            }
        }
    }
    bool in_ram = g_memmap_count == 0 && at + size <= 64ull << 20;
    for (size_t i = 0; i < g_memmap_count; ++i) {
        const struct rt_mem_range* r = &g_memmap[i];
        if (r->type == E820_RAM && at >= r->addr && at + size <= r->addr + r->size)
            in_ram = true;
    }
    if (!in_ram)
        rt_fail(61, "out of memory allocating %lu bytes at %p", (unsigned long)size, (void*)at);
    g_alloc_next = at + size;
    return (void*)at;
}
