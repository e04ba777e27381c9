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
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "scn_mem.h"
#include "tsc.h"

#define DEFAULT_MB 64

struct touch_job {
    struct mem_plan plan;
    uint64_t page;
    uint64_t pages;
    uint64_t first_cycles, again_cycles, mismatches, cpl;
};

static uint64_t pattern(uint64_t i) { return (i * 0x9E3779B97F4A7C15ULL) | 1; }

static uint64_t touch_user(void *arg)           /* CPL 3 */
{
    struct touch_job *job = arg;
    job->cpl = current_cpl();
    if (mem_map_window(&job->plan, job->page) < 0)
        return 1;
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
    if (mem_size_args("mem-touch", DEFAULT_MB, &mb, &job.page))
        return STATUS_USAGE;
    uint64_t bytes = mb << 20;
    if (mem_plan(mbi, "mem-touch", bytes, mem_pool_need(bytes, job.page), &job.plan))
        return STATUS_USAGE;
    const struct tsc_info *tsc = tsc_info();
    job.pages = bytes / PAGE_4K;
    if (mem_run_user("mem-touch", touch_user, &job))
        return STATUS_FAIL;
    kprintf("RESULT mem-touch mb=%lu pages=%s touched=%lu cycles=%lu", mb,
            job.page == PAGE_2M ? "2m" : "4k", job.pages, job.first_cycles);
    mem_print_ns("ns_per_page", job.first_cycles, job.pages, tsc->khz);
    mem_print_ns("retouch_ns_per_page", job.again_cycles, job.pages, tsc->khz);
    kprintf(" mismatches=%lu phys=0x%lx ram=%d tsc_khz=%lu tsc_source=%s cpl=%lu\n",
            job.mismatches, job.plan.data_phys, job.plan.data_is_ram, tsc->khz, tsc->source,
            job.cpl);
    return job.mismatches == 0 && job.cpl == 3 ? STATUS_OK : STATUS_FAIL;
}
