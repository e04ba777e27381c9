/*
 * mem-random: random reads over a working set larger than the TLB reaches, at CPL 3.
 *   mem-random [mb=256] [pages=4k|2m] [reads=1000000] [phys=ADDR] [high=1]
 * Maps mb MiB at MEM_WINDOW (scn_mem.h) with 4 KiB or 2 MiB guest pages and touches every
 * page once (untimed: first touches are mem-touch's business). Then `reads` loads, each
 * at a pseudo-random cache line of a pseudo-random page, the word within the line taken
 * from the value the previous load returned, so the loads cannot overlap and
 * ns_per_read is one load's latency: cache miss plus, where the
 * translation is not cached, the page walk through whatever tables the host built
 * (guest tables, then shadow or nested ones, at their page sizes).
 *   RESULT mem-random mb= pages= reads= cycles= ns_per_read= checksum= phys= tsc_khz=
 *          tsc_source= cpl=
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "scn_mem.h"
#include "tsc.h"

#define DEFAULT_MB 256
#define DEFAULT_READS 1000000
#define MAX_PAGES (1ULL << 32)          /* the page index is drawn from 32 random bits */
#define LINE_MASK 0xFC0ULL              /* a 64-byte line within the 4 KiB page */
#define WORD_IN_LINE 0x38ULL            /* a word within that line, from the last value */

struct random_job {
    struct mem_plan plan;
    uint64_t page, pages, reads;
    uint64_t cycles, checksum, cpl;
};

static uint64_t random_user(void *arg)          /* CPL 3 */
{
    struct random_job *job = arg;
    job->cpl = current_cpl();
    if (mem_map_window(&job->plan, job->page) < 0)
        return 1;
    volatile uint64_t *base = (volatile uint64_t *)MEM_WINDOW;
    const uint64_t stride = PAGE_4K / sizeof(uint64_t), n = job->pages;
    for (uint64_t i = 0; i < n; i++)
        base[i * stride] = 0;

    const volatile uint8_t *bytes = (const volatile uint8_t *)MEM_WINDOW;
    uint64_t x = 0x2545F4914F6CDD1DULL, v = 0, sum = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t r = 0; r < job->reads; r++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t page = ((x >> 32) * n) >> 32;
        uint64_t off = (page << 12) | ((x >> 8) & LINE_MASK);
        v = *(const volatile uint64_t *)(bytes + (off | (v & WORD_IN_LINE)));
        sum += v;
    }
    job->cycles = rdtsc() - t0;
    job->checksum = sum;
    return 0;
}

int scn_mem_random(const struct multiboot_info *mbi)
{
    static struct random_job job;
    uint64_t mb;
    if (mem_size_args("mem-random", DEFAULT_MB, &mb, &job.page) ||
        arg_u64("mem-random", "reads", DEFAULT_READS, &job.reads))
        return STATUS_USAGE;
    if (job.reads == 0) {
        kprintf("RESULT error bad-arg scenario=mem-random key=reads value=0\n");
        return STATUS_USAGE;
    }
    uint64_t bytes = mb << 20;
    job.pages = bytes / PAGE_4K;
    if (job.pages > MAX_PAGES)
        return STATUS_USAGE;
    if (mem_plan(mbi, "mem-random", bytes, mem_pool_need(bytes, job.page), &job.plan))
        return STATUS_USAGE;
    if (!job.plan.data_is_ram) {
        kprintf("RESULT error not-ram scenario=mem-random phys=0x%lx\n", job.plan.data_phys);
        return STATUS_USAGE;
    }
    const struct tsc_info *tsc = tsc_info();
    if (mem_run_user("mem-random", random_user, &job))
        return STATUS_FAIL;
    kprintf("RESULT mem-random mb=%lu pages=%s reads=%lu cycles=%lu", mb,
            job.page == PAGE_2M ? "2m" : "4k", job.reads, job.cycles);
    mem_print_ns("ns_per_read", job.cycles, job.reads, tsc->khz);
    kprintf(" checksum=%lu phys=0x%lx tsc_khz=%lu tsc_source=%s cpl=%lu\n", job.checksum,
            job.plan.data_phys, tsc->khz, tsc->source, job.cpl);
    return job.cpl == 3 ? STATUS_OK : STATUS_FAIL;
}
