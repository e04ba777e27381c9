/*
 * mem-touch: the cost of the first touch of fresh memory, at CPL 3.
 *   mem-touch [mb=64] [pages=4k|2m] [phys=ADDR] [high=1] [force=1]
 * Maps mb MiB of never-touched guest RAM at MEM_WINDOW (scn_mem.h) with 4 KiB or 2 MiB
 * guest pages, then writes one word per 4 KiB page: the first pass pays whatever the
 * host does on a first touch (allocating and zeroing host memory, building shadow or
 * nested page tables), the second pass (retouch) the same stores once all is in place.
 * A third, untimed pass reads every word back; mismatches= counts the pages that did not
 * keep what was written (0 on RAM; with phys= outside RAM and force=1 a VMM's answer to
 * page tables that point at nothing shows up here).
 *   RESULT mem-touch mb= pages= touched= cycles= ns_per_page= retouch_ns_per_page=
 *          mismatches= phys= ram= tsc_khz= tsc_source= cpl=
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "scn_mem.h"
#include "tsc.h"

#define DEFAULT_MB 64
#define MAX_MB (1ULL << 20)             /* 1 TiB: beyond any guest this kit runs in */

struct touch_job {
    struct mem_plan plan;
    uint64_t page;
    uint64_t pages;
    uint64_t first_cycles, again_cycles, mismatches, cpl;
    int failed;
};

static uint64_t pattern(uint64_t i) { return (i * 0x9E3779B97F4A7C15ULL) | 1; }

static uint64_t touch_user(void *arg)           /* CPL 3 */
{
    struct touch_job *job = arg;
    struct pt_pool pool;
    job->cpl = current_cpl();
    pt_pool_init(&pool, &job->plan);
    if (mem_map(&pool, pml4, MEM_WINDOW, job->plan.data_phys, job->plan.data_size,
                job->page) < 0) {
        job->failed = 1;
        return 0;
    }
    mem_syscall(SYS_MEM_CR3, (uint64_t)(uintptr_t)pml4);        /* the new PML4 slot */
    volatile uint64_t *base = (volatile uint64_t *)MEM_WINDOW;
    const uint64_t stride = PAGE_4K / sizeof(uint64_t), n = job->pages;

    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        base[i * stride] = pattern(i);
    uint64_t t1 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        base[i * stride] = pattern(i);
    uint64_t t2 = rdtsc();
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++)
        bad += base[i * stride] != pattern(i);
    job->first_cycles = t1 - t0;
    job->again_cycles = t2 - t1;
    job->mismatches = bad;
    return 0;
}

int scn_mem_touch(const struct multiboot_info *mbi)
{
    static struct touch_job job;
    uint64_t mb;
    if (arg_u64("mem-touch", "mb", DEFAULT_MB, &mb))
        return STATUS_USAGE;
    job.page = mem_page_arg("mem-touch");
    if (!job.page)
        return STATUS_USAGE;
    if (mb == 0 || mb > MAX_MB || (job.page == PAGE_2M && (mb & 1))) {
        kprintf("RESULT error bad-arg scenario=mem-touch key=mb value=%s\n", cmdline_get("mb"));
        return STATUS_USAGE;
    }
    uint64_t bytes = mb << 20;
    if (mem_plan(mbi, "mem-touch", bytes, mem_pool_need(bytes, job.page), &job.plan))
        return STATUS_USAGE;
    const struct tsc_info *tsc = tsc_info();
    job.pages = bytes / PAGE_4K;
    mem_syscalls_install();
    run_user(touch_user, &job);
    if (job.failed) {
        kprintf("RESULT error no-memory scenario=mem-touch what=page-tables\n");
        return STATUS_FAIL;
    }
    kprintf("RESULT mem-touch mb=%lu pages=%s touched=%lu cycles=%lu", mb,
            job.page == PAGE_2M ? "2m" : "4k", job.pages, job.first_cycles);
    mem_print_ns("ns_per_page", job.first_cycles, job.pages, tsc->khz);
    mem_print_ns("retouch_ns_per_page", job.again_cycles, job.pages, tsc->khz);
    kprintf(" mismatches=%lu phys=0x%lx ram=%d tsc_khz=%lu tsc_source=%s cpl=%lu\n",
            job.mismatches, job.plan.data_phys, job.plan.data_is_ram, tsc->khz, tsc->source,
            job.cpl);
    return job.mismatches == 0 && job.cpl == 3 ? STATUS_OK : STATUS_FAIL;
}
