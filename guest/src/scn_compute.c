/*
 * compute: CPU-bound work at CPL 3 (native speed on this host), for a fixed TSC time.
 *   compute [seconds=1] [ms=M] [tsc_khz=K]     ms, when given, overrides seconds
 * The loop is an LCG with a mixing step, checking the TSC every CHUNK steps; work counts
 * LCG steps. Returns to CPL 0 with SYS_EXIT (int 0x80, see layout.h); sys_entry= says
 * whether that came through the gate or the #UD fixup.
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"

#define CHUNK 65536

struct compute_job {
    uint64_t ticks;             /* how long to run, in TSC cycles */
    uint64_t t_start, t_end;    /* TSC, read at CPL 3 */
    uint64_t checksum;
    uint64_t cpl;
};

static const char user_msg[] = "compute: running at CPL 3\n";

static uint64_t compute_user(void *arg)         /* runs at CPL 3 */
{
    struct compute_job *job = arg;
    uint64_t x = 0x9E3779B97F4A7C15ULL, acc = 0, work = 0;
    job->cpl = current_cpl();
    uint64_t deadline = (job->t_start = rdtsc()) + job->ticks;
    do {
        for (unsigned i = 0; i < CHUNK; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            acc ^= x >> 29;
            acc = (acc << 7) | (acc >> 57);
            __asm__ volatile("" : "+r"(x), "+r"(acc));  /* no closed forms, please */
        }
        work += CHUNK;
    } while ((job->t_end = rdtsc()) < deadline);
    job->checksum = acc;
    for (const char *p = user_msg; *p; p++)     /* outside the timed part */
        sys_putc(*p);
    return work;
}

int scn_compute(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t seconds, ms;
    if (arg_u64("compute", "seconds", 1, &seconds) || arg_u64("compute", "ms", 0, &ms))
        return STATUS_USAGE;
    if (!cmdline_get("ms"))
        ms = seconds * 1000;

    const struct tsc_info *tsc = tsc_info();
    static struct compute_job job;
    job.ticks = ms * tsc->khz;
    uint64_t work = run_user(compute_user, &job);
    uint64_t cycles = job.t_end - job.t_start;

    kprintf("RESULT compute seconds=%lu ms=%lu work=%lu cycles=%lu tsc_khz=%lu tsc_source=%s "
            "cpl=%lu sys_entry=%s\n", seconds, ms, work, cycles, tsc->khz, tsc->source, job.cpl,
            syscall_ud_count ? "ud" : "gate");
    return job.cpl == 3 ? STATUS_OK : STATUS_FAIL;
}
