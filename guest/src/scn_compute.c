/*
 * compute: CPU-bound work at CPL 3 (native speed on this host), for a fixed TSC time.
 *   compute [seconds=1] [ms=M] [hz=N] [tsc_khz=K]     ms, when given, overrides seconds
 * The loop is an LCG with a mixing step, checking the TSC every CHUNK steps; work counts
 * LCG steps. Returns to CPL 0 with SYS_EXIT (int 0x80, see layout.h); sys_entry= says
 * whether that came through the gate or the #UD fixup.
 * With hz=N (N > 0) the PIT interrupts at N Hz on IRQ 0 while the loop runs at CPL 3 with
 * RFLAGS.IF=1; ticks= counts those taken during the timed part. The loop is the same code
 * either way, so work= of hz=0 and hz=N runs compare: the difference is the cost of the
 * interrupts. hz=0 (the default) touches neither the PIC nor the PIT.
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "pic.h"
#include "pit.h"
#include "scenario.h"
#include "tsc.h"

#define CHUNK 65536

struct compute_job {
    uint64_t duration;          /* how long to run, in TSC cycles */
    uint64_t t_start, t_end;    /* TSC, read at CPL 3 */
    const volatile uint64_t *tick_counter;
    uint64_t ticks_start, ticks_end;
    uint64_t checksum;
    uint64_t cpl;
};

static const char user_msg[] = "compute: running at CPL 3\n";

static uint64_t compute_user(void *arg)         /* runs at CPL 3 */
{
    struct compute_job *job = arg;
    uint64_t x = 0x9E3779B97F4A7C15ULL, acc = 0, work = 0;
    job->cpl = current_cpl();
    uint64_t deadline = (job->t_start = rdtsc()) + job->duration;
    job->ticks_start = *job->tick_counter;
    do {
        for (unsigned i = 0; i < CHUNK; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            acc ^= x >> 29;
            acc = (acc << 7) | (acc >> 57);
            __asm__ volatile("" : "+r"(x), "+r"(acc));  /* no closed forms, please */
        }
        work += CHUNK;
    } while ((job->t_end = rdtsc()) < deadline);
    job->ticks_end = *job->tick_counter;
    job->checksum = acc;
    for (const char *p = user_msg; *p; p++)     /* outside the timed part */
        sys_putc(*p);
    return work;
}

int scn_compute(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t seconds, ms, hz;
    if (arg_u64("compute", "seconds", 1, &seconds) || arg_u64("compute", "ms", 0, &ms) ||
        arg_u64("compute", "hz", 0, &hz))
        return STATUS_USAGE;
    if (hz > PIT_INPUT_HZ / 2) {
        kprintf("RESULT error bad-arg scenario=compute key=hz value=%s\n", cmdline_get("hz"));
        return STATUS_USAGE;
    }
    if (!cmdline_get("ms"))
        ms = seconds * 1000;

    const struct tsc_info *tsc = tsc_info();
    static struct compute_job job;
    job.duration = ms * tsc->khz;
    job.tick_counter = &pit_ticks;
    uint64_t saved_rflags = user_rflags;
    if (hz) {
        pic_init();
        pit_periodic(pit_divisor((uint32_t)hz));
        irq_attach_counter(PIT_IRQ, &pit_ticks);
        user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
    }
    uint64_t work = run_user(compute_user, &job);
    user_rflags = saved_rflags;
    if (hz)
        irq_detach(PIT_IRQ);
    uint64_t cycles = job.t_end - job.t_start;

    kprintf("RESULT compute seconds=%lu ms=%lu hz=%lu ticks=%lu work=%lu cycles=%lu tsc_khz=%lu "
            "tsc_source=%s cpl=%lu sys_entry=%s\n", seconds, ms, hz,
            job.ticks_end - job.ticks_start, work, cycles, tsc->khz, tsc->source, job.cpl,
            syscall_ud_count ? "ud" : "gate");
    return job.cpl == 3 ? STATUS_OK : STATUS_FAIL;
}
