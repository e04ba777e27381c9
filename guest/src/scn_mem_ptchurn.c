/*
 * mem-ptchurn: the page-table work of a multitasking OS, per operation.
 *   mem-ptchurn [n=2000] [spaces=4] [pages=64]
 * Builds `spaces` address spaces (each its own PML4 sharing the kit's identity map, with
 * `pages` 4 KiB pages of its own at MEM_WINDOW), all at CPL 3, and times n of each:
 *   syscall_ns    a null system call: CPL 3 -> CPL 0 -> CPL 3. CR3 loads and invlpg are
 *                 privileged, so every one below pays this too; on a kvm_pvm host the
 *                 CPL 0 side is emulated (host.md) and dominates
 *   switch_ns     an address-space switch: the system call loading the next space's CR3,
 *                 and one read through the new space
 *   pte_write_ns  one store to a live page-table entry (unmap, then map again), at CPL 3:
 *                 what a shadow-paging host must trap or resync
 *   map_cycle_ns  unmap a page (PTE store + invlpg system call), map it again, read it
 *   invlpg_ns     the invlpg system call alone
 * Every read checks that the page holds what its space wrote there (mismatches=).
 *   RESULT mem-ptchurn n= spaces= pages= syscall_ns= switch_ns= pte_write_ns=
 *          map_cycle_ns= invlpg_ns= mismatches= tsc_khz= tsc_source= cpl=
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "scn_mem.h"
#include "tsc.h"

#define DEFAULT_N 2000
#define DEFAULT_SPACES 4
#define DEFAULT_PAGES 64
#define MAX_SPACES 64
#define MAX_PAGES 512                   /* one page table per space */
#define TABLES_PER_SPACE 4              /* PML4, PDPT, PD, PT */

struct churn_job {
    struct mem_plan plan;
    uint64_t n, spaces, pages;
    uint64_t syscall_cycles, switch_cycles, pte_cycles, cycle_cycles, invlpg_cycles;
    uint64_t mismatches, cpl;
};

static uint64_t *space_pml4[MAX_SPACES];
static uint64_t *space_pte[MAX_SPACES];         /* PTE of the space's first page */

static uint64_t marker(uint64_t space, uint64_t page) { return (space << 32) | page | 1; }

static uint64_t frame(const struct churn_job *job, uint64_t space, uint64_t page)
{
    return job->plan.data_phys + (space * job->pages + page) * PAGE_4K;
}

static volatile uint64_t *window_page(uint64_t page)
{
    return (volatile uint64_t *)(MEM_WINDOW + page * PAGE_4K);
}

static uint64_t churn_user(void *arg)           /* CPL 3 */
{
    struct churn_job *job = arg;
    struct pt_pool pool;
    const uint64_t n = job->n, spaces = job->spaces, pages = job->pages;
    uint64_t bad = 0;
    job->cpl = current_cpl();
    pt_pool_init(&pool, &job->plan);
    for (uint64_t s = 0; s < spaces; s++) {
        uint64_t *top = pt_alloc(&pool);
        if (!top || mem_map(&pool, top, MEM_WINDOW, frame(job, s, 0), pages * PAGE_4K,
                            PAGE_4K) < 0) {
            return 1;                           /* the pool ran out */
        }
        top[0] = pml4[0];                       /* the identity map: kernel and tables */
        space_pml4[s] = top;
        space_pte[s] = mem_leaf(top, MEM_WINDOW);
    }
    for (uint64_t s = 0; s < spaces; s++) {     /* every page written once, in its space */
        mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)space_pml4[s]);
        for (uint64_t p = 0; p < pages; p++)
            *window_page(p) = marker(s, p);
    }
    mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)space_pml4[0]);

    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        mem_syscall(SYS_MEM_NOP, 0);
    uint64_t t1 = rdtsc();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t s = (i + 1) % spaces, p = i % pages;
        mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)space_pml4[s]);
        bad += *window_page(p) != marker(s, p);
    }
    uint64_t t2 = rdtsc();
    mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)space_pml4[0]);

    volatile uint64_t *pte = space_pte[0];
    uint64_t t3 = rdtsc();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t p = i % pages;
        pte[p] = 0;
        pte[p] = frame(job, 0, p) | MPTE_FLAGS;
    }
    uint64_t t4 = rdtsc();
    mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)space_pml4[0]);

    uint64_t t5 = rdtsc();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t p = i % pages;
        pte[p] = 0;
        mem_syscall(SYS_MEM_INVLPG, (uint64_t)(uintptr_t)window_page(p));
        pte[p] = frame(job, 0, p) | MPTE_FLAGS;
        bad += *window_page(p) != marker(0, p);
    }
    uint64_t t6 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        mem_syscall(SYS_MEM_INVLPG, (uint64_t)(uintptr_t)window_page(i % pages));
    uint64_t t7 = rdtsc();
    mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)pml4);

    job->syscall_cycles = t1 - t0;
    job->switch_cycles = t2 - t1;
    job->pte_cycles = t4 - t3;
    job->cycle_cycles = t6 - t5;
    job->invlpg_cycles = t7 - t6;
    job->mismatches = bad;
    return 0;
}

int scn_mem_ptchurn(const struct multiboot_info *mbi)
{
    static struct churn_job job;
    if (arg_u64("mem-ptchurn", "n", DEFAULT_N, &job.n) ||
        arg_u64("mem-ptchurn", "spaces", DEFAULT_SPACES, &job.spaces) ||
        arg_u64("mem-ptchurn", "pages", DEFAULT_PAGES, &job.pages))
        return STATUS_USAGE;
    const char *bad_key = !job.n ? "n"
        : (job.spaces < 2 || job.spaces > MAX_SPACES) ? "spaces"
        : (!job.pages || job.pages > MAX_PAGES) ? "pages" : 0;
    if (bad_key) {
        kprintf("RESULT error bad-arg scenario=mem-ptchurn key=%s value=%s\n", bad_key,
                cmdline_get(bad_key));
        return STATUS_USAGE;
    }
    uint64_t bytes = (job.spaces * job.pages * PAGE_4K + PAGE_2M - 1) & ~(PAGE_2M - 1);
    uint64_t pool = (job.spaces * TABLES_PER_SPACE + 8) * PAGE_4K;
    if (mem_plan(mbi, "mem-ptchurn", bytes, pool, &job.plan))
        return STATUS_USAGE;
    if (!job.plan.data_is_ram) {
        kprintf("RESULT error not-ram scenario=mem-ptchurn phys=0x%lx\n", job.plan.data_phys);
        return STATUS_USAGE;
    }
    const struct tsc_info *tsc = tsc_info();
    if (mem_run_user("mem-ptchurn", churn_user, &job))
        return STATUS_FAIL;
    kprintf("RESULT mem-ptchurn n=%lu spaces=%lu pages=%lu", job.n, job.spaces, job.pages);
    mem_print_ns("syscall_ns", job.syscall_cycles, job.n, tsc->khz);
    mem_print_ns("switch_ns", job.switch_cycles, job.n, tsc->khz);
    mem_print_ns("pte_write_ns", job.pte_cycles, 2 * job.n, tsc->khz);
    mem_print_ns("map_cycle_ns", job.cycle_cycles, job.n, tsc->khz);
    mem_print_ns("invlpg_ns", job.invlpg_cycles, job.n, tsc->khz);
    kprintf(" mismatches=%lu tsc_khz=%lu tsc_source=%s cpl=%lu\n", job.mismatches, tsc->khz,
            tsc->source, job.cpl);
    return job.mismatches == 0 && job.cpl == 3 ? STATUS_OK : STATUS_FAIL;
}
