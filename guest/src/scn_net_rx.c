/*
 * net-rx: count and check the test frames (net.h layout) a peer sends.
 *   net-rx [n=1000] [ms=10000] [idle_ms=2000] [copy=0] [txirq=1]
 * Prints "net-rx: ready mac=<guest MAC> n=N" once the receiver is on (a harness starts
 * sending then), and waits at CPL 3 with interrupts on while the IRQ handler moves each
 * frame from the ring into the staging queue; the same CPL 3 loop checks every staged
 * frame (destination = the guest's MAC, source = NET_PEER_MAC, ethertype, pattern of its
 * seq) as it comes. copy=B (18..1514) has the handler stage only the first B bytes of
 * each frame (the pattern is checked that far): the driver's cost without the full copy,
 * most of it for large frames here (`rep movsq` is emulated, about 1 us a quadword).
 * The wait ends (end=) when seq n-1 or n frames have come (done), ms after "ready"
 * (deadline), or idle_ms after the latest frame once one came (idle; 0: never).
 * RESULT net-rx ok= n= got= bad= lost= dup= bytes= cycles= pps= mbps= end= copy= ...
 * got: good frames of seq 0..n-1; bad: frames that failed the check (or seq >= n);
 * lost: seqs below n never seen (gaps, and the tail when the wait ended early); dup: a
 * seq not above the last one (repeated or reordered). cycles: from the driver's TSC for
 * the first frame to that for the last; pps and mbps (frame bytes without CRC) over that
 * time with got - 1 frames (the first frame starts the clock).
 * ok=1: got = n, bad = 0, driver clean.
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "net.h"
#include "rtl8139.h"
#include "scenario.h"
#include "tsc.h"

enum { END_DONE, END_DEADLINE, END_IDLE, END_STALLED };

struct rx_job {
    uint64_t n, deadline, idle;
    uint64_t got, bad, dup, gaps, next, bytes;
    uint64_t first_tsc, last_tsc, first_bytes, last_seen;
    uint32_t bad_bits;
    int done;
};

/* CPL 3, IF=1: an END_*; END_STALLED asks CPL 0 for rtl_rx_resume(). */
static uint64_t rx_user(void *arg)
{
    struct rx_job *job = arg;
    for (;;) {
        uint64_t cons = rtl_rx_cons, prod = rtl_rx_prod;
        if (cons < prod)
            job->last_seen = rdtsc();
        for (; cons < prod && !job->done; cons++) {
            const struct rtl_rx_entry *e = rtl_rx_entry(cons);
            const uint8_t *f = rtl_rx_data(cons);
            uint32_t bad = net_check(f, e->len, e->copied, rtl.mac, net_peer_mac,
                                     NET_PATTERN_OFFSET);
            uint32_t seq = bad & NET_BAD_SHORT ? 0 : net_seq(f);
            if (!bad && seq >= job->n)
                bad = NET_BAD_PATTERN;
            if (bad) {
                job->bad++;
                job->bad_bits |= bad;
            } else {
                if (!job->got) {
                    job->first_tsc = e->tsc;
                    job->first_bytes = e->len;
                }
                job->got++;
                job->bytes += e->len;
                job->last_tsc = e->tsc;
                if (seq < job->next) {
                    job->dup++;
                } else {
                    job->gaps += seq - job->next;
                    job->next = seq + 1;
                }
            }
            if (job->next >= job->n || job->got + job->bad >= job->n)
                job->done = 1;
        }
        rtl_rx_cons = cons;
        if (job->done)
            return END_DONE;
        if (rtl_rx_stalled && cons == rtl_rx_prod)
            return END_STALLED;
        uint64_t now = rdtsc();
        if (now > job->deadline)
            return END_DEADLINE;
        if (job->idle && job->last_seen && now - job->last_seen > job->idle)
            return END_IDLE;
        __asm__ volatile("pause");
    }
}

int scn_net_rx(const struct multiboot_info *mbi)
{
    uint64_t n, ms, idle_ms, copy;
    if (arg_u64("net-rx", "n", 1000, &n) || arg_u64("net-rx", "ms", 10000, &ms) ||
        arg_u64("net-rx", "idle_ms", 2000, &idle_ms) || arg_u64("net-rx", "copy", 0, &copy))
        return STATUS_USAGE;
    const char *bad_key = n == 0 || n > 0xFFFFFFFFu ? "n"
                          : copy && (copy < NET_HEADER_BYTES || copy > RTL_MAX_FRAME) ? "copy"
                          : NULL;
    if (bad_key) {
        kprintf("RESULT error bad-arg scenario=net-rx key=%s value=%s\n", bad_key,
                cmdline_get(bad_key));
        return STATUS_USAGE;
    }
    int st = net_setup("net-rx", mbi, 0, (uint32_t)copy);
    if (st != STATUS_OK)
        return st;
    char mac[18];
    net_format_mac(mac, rtl.mac);
    kprintf("net-rx: ready mac=%s n=%lu\n", mac, n);

    struct rx_job job = { 0 };
    job.n = n;
    job.deadline = rdtsc() + tsc_us(ms * 1000);
    job.idle = tsc_us(idle_ms * 1000);
    uint64_t saved = user_rflags;
    user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
    uint64_t end;
    while ((end = run_user(rx_user, &job)) == END_STALLED)
        rtl_rx_resume();
    user_rflags = saved;

    uint64_t lost = job.gaps + (job.next < n ? n - job.next : 0);
    uint64_t cycles = job.got > 1 ? job.last_tsc - job.first_tsc : 0;
    uint64_t pps, whole, hundredths;
    net_rate(job.got > 1 ? job.got - 1 : 0, job.got > 1 ? job.bytes - job.first_bytes : 0,
             cycles, &pps, &whole, &hundredths);
    if (job.bad)
        kprintf("net-rx: %lu bad frames, check bits 0x%x\n", job.bad, job.bad_bits);
    const struct tsc_info *tsc = tsc_info();
    int ok = job.got == n && !job.bad && !net_driver_trouble();
    kprintf("RESULT net-rx ok=%d n=%lu got=%lu bad=%lu lost=%lu dup=%lu bytes=%lu cycles=%lu "
            "pps=%lu mbps=%lu.%02lu end=%s copy=%lu tsc_khz=%lu tsc_source=%s", ok, n,
            job.got, job.bad, lost, job.dup, job.bytes, cycles, pps, whole, hundredths,
            end == END_DONE ? "done" : end == END_IDLE ? "idle" : "deadline", copy, tsc->khz,
            tsc->source);
    net_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
