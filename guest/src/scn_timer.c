/*
 * timer: PIT tick rate against the TSC and against the CMOS RTC's seconds.
 *   timer [hz=100] [seconds=1] [ms=M]
 * Programs PIT channel 0 in mode 2 at hz (divisor 1193182/hz rounded), IRQ 0 through the
 * 8259 (IRQ_FLOW_ACK), and waits at CPL 3 with RFLAGS.IF=1 while the handler counts:
 *   1. for ms of TSC time: ticks=, against expected= (the divisor's exact rate),
 *      tsc_rate_ppm = (ticks - exact) * 1e6 / exact;
 *   2. from one change of the RTC seconds register to the S-th change after it (S =
 *      seconds, at least 1): rtc_ticks=, rtc_ticks_per_second = rtc_ticks / S rounded.
 * RESULT timer hz= divisor= seconds= ms= ticks= expected= tsc_rate_ppm= rtc_seconds=
 *   rtc_ticks= rtc_ticks_per_second= tsc_khz= tsc_source= [rtc-timeout]
 * Status 1 when no tick came or the RTC seconds never changed.
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "pic.h"
#include "pit.h"
#include "rtc.h"
#include "scenario.h"
#include "tsc.h"

#define DEFAULT_HZ 100
#define MAX_MS     600000ULL    /* keeps the ppm arithmetic inside 64 bits */
#define RTC_SLACK_S 3           /* the first change may take a second, then jitter */

struct rtc_job {
    uint64_t cycles;            /* give up after this long */
    unsigned changes;           /* RTC seconds changes to count ticks over */
    uint64_t ticks;             /* result */
    int timeout;
};

/* Seconds register, or -1 during an update (the RTC's registers are not valid then). */
static int rtc_seconds_now(void)
{
    if (cmos_read(RTC_REG_A) & RTC_A_UIP)
        return -1;
    return cmos_read(RTC_SECONDS);
}

static uint64_t rtc_ticks_user(void *arg)       /* CPL 3, IF=1 */
{
    struct rtc_job *job = arg;
    uint64_t deadline = rdtsc() + job->cycles, k0 = 0;
    unsigned changes = 0;
    int last = -1;
    while (rdtsc() < deadline) {
        int now = rtc_seconds_now();
        if (now < 0 || now == last)
            continue;
        if (last >= 0) {                        /* a change, not the first reading */
            if (changes++ == 0) {
                k0 = pit_ticks;
            } else if (changes == job->changes + 1) {
                job->ticks = pit_ticks - k0;
                return 0;
            }
        }
        last = now;
    }
    job->timeout = 1;
    return 0;
}

int scn_timer(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t hz, seconds, ms;
    if (arg_u64("timer", "hz", DEFAULT_HZ, &hz) || arg_u64("timer", "seconds", 1, &seconds) ||
        arg_u64("timer", "ms", 0, &ms))
        return STATUS_USAGE;
    if (!cmdline_get("ms"))
        ms = seconds * 1000;
    if (hz == 0 || hz > PIT_INPUT_HZ / 2 || ms == 0 || ms > MAX_MS) {
        int bad_hz = hz == 0 || hz > PIT_INPUT_HZ / 2;
        kprintf("RESULT error bad-arg scenario=timer key=%s value=%lu\n",
                bad_hz ? "hz" : "ms", bad_hz ? hz : ms);
        return STATUS_USAGE;
    }
    unsigned rtc_seconds = ms < 1000 ? 1 : (unsigned)(ms / 1000);

    const struct tsc_info *tsc = tsc_info();    /* before the PIT is reprogrammed */
    uint32_t divisor = pit_divisor((uint32_t)hz);
    pic_init();
    pit_periodic(divisor);
    irq_attach_counter(PIT_IRQ, &pit_ticks);

    uint64_t ticks = irq_count_for(&pit_ticks, ms * tsc->khz);
    struct rtc_job by_rtc = { (uint64_t)(rtc_seconds + RTC_SLACK_S) * 1000 * tsc->khz,
                              rtc_seconds, 0, 0 };
    uint64_t saved_rflags = user_rflags;
    user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
    run_user(rtc_ticks_user, &by_rtc);
    user_rflags = saved_rflags;
    irq_detach(PIT_IRQ);

    /* exact = ms * 1193182 / (divisor * 1000) ticks */
    uint64_t exact_num = ms * PIT_INPUT_HZ, exact_den = (uint64_t)divisor * 1000;
    uint64_t expected = (exact_num + exact_den / 2) / exact_den;
    int64_t diff = (int64_t)(ticks * exact_den) - (int64_t)exact_num;
    int64_t ppm = diff * 1000000 / (int64_t)exact_num;
    uint64_t rtc_tps = by_rtc.timeout ? 0 : (by_rtc.ticks + rtc_seconds / 2) / rtc_seconds;

    kprintf("RESULT timer hz=%lu divisor=%u seconds=%lu ms=%lu ticks=%lu expected=%lu "
            "tsc_rate_ppm=%ld rtc_seconds=%u rtc_ticks=%lu rtc_ticks_per_second=%lu "
            "tsc_khz=%lu tsc_source=%s%s\n", hz, divisor, seconds, ms, ticks, expected,
            ppm, rtc_seconds, by_rtc.ticks, rtc_tps, tsc->khz, tsc->source,
            by_rtc.timeout ? " rtc-timeout" : "");
    return ticks && !by_rtc.timeout ? STATUS_OK : STATUS_FAIL;
}
