/* What the memory scenarios share: placement, page tables built at CPL 3, system calls. */
#include "cmdline.h"
#include "cpu.h"
#include "kit.h"
#include "multiboot.h"
#include "scn_mem.h"

#define MMAP_MAX_ENTRIES 64
#define FOUR_GIB 0x100000000ULL
#define POOL_SLACK_PAGES 8ULL
#define MAX_MB (1ULL << 20)             /* 1 TiB: beyond any guest this kit runs in */

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

struct range { uint64_t base, end; };

/* The available-RAM ranges of the Multiboot memory map. */
static int ram_ranges(const struct multiboot_info *mbi, struct range *out, int max)
{
    int n = 0;
    if (!(mbi->flags & MBI_FLAG_MMAP))
        return 0;
    uintptr_t p = mbi->mmap_addr, end = p + mbi->mmap_length;
    for (int i = 0; p < end && i < MMAP_MAX_ENTRIES && n < max; i++) {
        const struct multiboot_mmap_entry *e = (const void *)p;
        if (e->type == 1 && e->len)
            out[n++] = (struct range){ e->addr, e->addr + e->len };
        p += e->size + 4;
    }
    return n;
}

static int inside(const struct range *r, int n, uint64_t base, uint64_t size)
{
    for (int i = 0; i < n; i++)
        if (base >= r[i].base && base + size <= r[i].end && base + size >= base)
            return 1;
    return 0;
}

int mem_plan(const struct multiboot_info *mbi, const char *scenario, uint64_t data_bytes,
             uint64_t pool_bytes, struct mem_plan *plan)
{
    struct range r[MMAP_MAX_ENTRIES];
    int n = ram_ranges(mbi, r, MMAP_MAX_ENTRIES);
    uint64_t phys, high, force;
    if (arg_u64(scenario, "phys", 0, &phys) || arg_u64(scenario, "high", 0, &high) ||
        arg_u64(scenario, "force", 0, &force))
        return -1;
    uint64_t kernel_end = (uint64_t)(uintptr_t)_kernel_end;
    plan->pool_phys = align_up(kernel_end, PAGE_2M);
    plan->pool_size = align_up(pool_bytes, PAGE_4K);
    plan->data_size = data_bytes;
    uint64_t pool_end = plan->pool_phys + plan->pool_size;
    if (pool_end > FOUR_GIB || !inside(r, n, plan->pool_phys, plan->pool_size)) {
        kprintf("RESULT error no-memory scenario=%s what=page-tables need_kb=%lu\n", scenario,
                plan->pool_size >> 10);
        return -1;
    }
    plan->data_is_ram = 1;
    if (cmdline_get("phys")) {
        if (phys & (PAGE_2M - 1)) {
            kprintf("RESULT error bad-arg scenario=%s key=phys value=%s\n", scenario,
                    cmdline_get("phys"));
            return -1;
        }
        plan->data_phys = phys;
        plan->data_is_ram = inside(r, n, phys, data_bytes) && phys >= align_up(pool_end, PAGE_2M);
        if (!plan->data_is_ram && !force) {
            kprintf("RESULT error not-ram scenario=%s phys=0x%lx mb=%lu\n", scenario, phys,
                    data_bytes >> 20);
            return -1;
        }
        return 0;
    }
    uint64_t best = 0, have = 0;
    for (int i = 0; i < n; i++) {
        uint64_t base = align_up(r[i].base < pool_end ? pool_end : r[i].base, PAGE_2M);
        if ((high && r[i].base < FOUR_GIB) || base >= r[i].end)
            continue;
        if (r[i].end - base > have) {
            have = r[i].end - base;
            best = base;
        }
        if (!high)
            break;                      /* default: the low range, after the pool */
    }
    if (have < data_bytes) {
        kprintf("RESULT error no-memory scenario=%s need_mb=%lu free_mb=%lu%s\n", scenario,
                data_bytes >> 20, have >> 20, high ? " where=above-4g" : "");
        return -1;
    }
    plan->data_phys = best;
    return 0;
}

static int mem_syscall_handler(struct regs *r)           /* CPL 0 */
{
    switch (r->rax) {
    case SYS_MEM_NOP:
        break;
    case SYS_MEM_CR3:
        __asm__ volatile("mov %0, %%cr3" :: "r"(r->rdi) : "memory");
        break;
    case SYS_MEM_INVLPG:
        __asm__ volatile("invlpg (%0)" :: "r"(r->rdi) : "memory");
        break;
    default:
        return 0;
    }
    r->rax = 0;
    return 1;
}

void mem_syscalls_install(void)
{
    syscall_extension = mem_syscall_handler;
}

void pt_pool_init(struct pt_pool *pool, const struct mem_plan *plan)
{
    pool->next = plan->pool_phys;
    pool->end = plan->pool_phys + plan->pool_size;
    pool->exhausted = 0;
}

uint64_t *pt_alloc(struct pt_pool *pool)
{
    if (pool->next + PAGE_4K > pool->end) {
        pool->exhausted = 1;
        return 0;
    }
    uint64_t *page = (uint64_t *)(uintptr_t)pool->next;
    pool->next += PAGE_4K;
    for (unsigned i = 0; i < 512; i++)
        page[i] = 0;
    return page;
}

static uint64_t *next_table(struct pt_pool *pool, uint64_t *table, unsigned index)
{
    uint64_t e = table[index];
    if (e & MPTE_P)
        return (e & MPTE_PS) ? 0 : (uint64_t *)(uintptr_t)(e & MPTE_ADDR);
    uint64_t *t = pt_alloc(pool);
    if (t)
        table[index] = (uint64_t)(uintptr_t)t | MPTE_FLAGS;
    return t;
}

int mem_map(struct pt_pool *pool, uint64_t *pml4_table, uint64_t va, uint64_t phys,
            uint64_t size, uint64_t page)
{
    for (uint64_t off = 0; off < size; off += page) {
        uint64_t v = va + off;
        uint64_t *pdpt = next_table(pool, pml4_table, (v >> 39) & 511);
        uint64_t *pd = pdpt ? next_table(pool, pdpt, (v >> 30) & 511) : 0;
        if (!pd)
            return -1;
        if (page == PAGE_2M) {
            pd[(v >> 21) & 511] = (phys + off) | MPTE_FLAGS | MPTE_PS;
            continue;
        }
        uint64_t *pt = next_table(pool, pd, (v >> 21) & 511);
        if (!pt)
            return -1;
        pt[(v >> 12) & 511] = (phys + off) | MPTE_FLAGS;
    }
    return 0;
}

uint64_t *mem_leaf(uint64_t *pml4_table, uint64_t va)
{
    uint64_t *t = pml4_table;
    for (int shift = 39; shift >= 12; shift -= 9) {
        uint64_t *e = &t[(va >> shift) & 511];
        if (shift == 12 || (shift == 21 && (*e & MPTE_PS)))
            return e;
        if (!(*e & MPTE_P))
            return 0;
        t = (uint64_t *)(uintptr_t)(*e & MPTE_ADDR);
    }
    return 0;
}

uint64_t mem_pool_need(uint64_t size, uint64_t page)
{
    uint64_t pds = (size + (1ULL << 30) - 1) >> 30;
    uint64_t pts = page == PAGE_4K ? (size + PAGE_2M - 1) / PAGE_2M : 0;
    return (1 + pds + pts + POOL_SLACK_PAGES) * PAGE_4K;
}

uint64_t mem_page_arg(const char *scenario)
{
    const char *s = cmdline_get("pages");
    if (!s || strcmp(s, "4k") == 0)
        return PAGE_4K;
    if (strcmp(s, "2m") == 0)
        return PAGE_2M;
    kprintf("RESULT error bad-arg scenario=%s key=pages value=%s\n", scenario, s);
    return 0;
}

int mem_size_args(const char *scenario, uint64_t default_mb, uint64_t *mb, uint64_t *page)
{
    if (arg_u64(scenario, "mb", default_mb, mb))
        return -1;
    *page = mem_page_arg(scenario);
    if (!*page)
        return -1;
    if (*mb == 0 || *mb > MAX_MB || (*page == PAGE_2M && (*mb & 1))) {
        kprintf("RESULT error bad-arg scenario=%s key=mb value=%s\n", scenario,
                cmdline_get("mb"));
        return -1;
    }
    return 0;
}

int mem_map_window(const struct mem_plan *plan, uint64_t page)
{
    struct pt_pool pool;
    pt_pool_init(&pool, plan);
    if (mem_map(&pool, pml4, MEM_WINDOW, plan->data_phys, plan->data_size, page) < 0)
        return -1;
    mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)pml4);        /* the new PML4 slot */
    return 0;
}

int mem_run_user(const char *scenario, uint64_t (*fn)(void *), void *job)
{
    mem_syscalls_install();
    if (run_user(fn, job) == 0)
        return 0;
    kprintf("RESULT error no-memory scenario=%s what=page-tables\n", scenario);
    return -1;
}

void mem_print_ns(const char *key, uint64_t cycles, uint64_t ops, uint64_t tsc_khz)
{
    if (!ops || !tsc_khz) {
        kprintf(" %s=0", key);
        return;
    }
    uint64_t per_op_x1000 = (cycles / ops) * 1000 + (cycles % ops) * 1000 / ops;
    uint64_t ns_x100 = per_op_x1000 * 100000 / tsc_khz;
    kprintf(" %s=%lu.%02lu", key, ns_x100 / 100, ns_x100 % 100);
}
