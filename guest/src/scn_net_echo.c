/*
 * net-echo: ping-pong with a peer that sends every frame back, round trips by the TSC.
 *   net-echo [n=100] [size=60] [ms=1000] [txirq=1]
 * Frames seq 0..n-1 (net.h layout, to NET_PEER_MAC) are made at CPL 3 beforehand. For
 * each: bytes 18-25 get the TSC (u64 little-endian) just before its TSD write; then the
 * guest waits at CPL 3 with interrupts on, checking what the IRQ handler stages, until
 * the frame of that seq comes back (destination = the guest's MAC, source = the peer,
 * pattern from byte 26) or ms pass (counted lost; the next frame goes out). The round
 * trip: from the stamp in the returned frame to the handler's TSC when it took the frame
 * from the ring. One frame in flight at a time.
 * RESULT net-echo ok= n= size= got= lost= late= bad= rtt_p50_us= rtt_p99_us= rtt_max_us=
 *   rtt_min_us= rtt_mean_us= submit_us_mean= irq_us_mean= cycles= ...
 * submit_us_mean: the TSD write (the VMM sends the frame in that exit, or not); irq_us_mean:
 * from the stamp to the entry of the handler run that took the echo (the rest of the round
 * trip is the handler's ISR/CR accesses before it reads the frame's header).
 * late: returns of a seq already given up on; percentiles by rank: the value at index
 * (got - 1) * p / 100 of the sorted round trips. ok=1: got = n, bad = 0, driver clean.
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "net.h"
#include "rtl8139.h"
#include "scenario.h"
#include "tsc.h"

#define DEFAULT_N   100
#define DEFAULT_MS  1000

struct echo_job {
    uint32_t want;
    uint64_t deadline;
    uint64_t rtt;               /* out: cycles, when found */
    uint64_t to_irq;            /* out: from the stamp to the entry of the handler run */
    uint64_t late, bad;
    uint32_t bad_bits;
};

static uint64_t stamp_of(const uint8_t *f)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | f[NET_STAMP_OFFSET + i];
    return v;
}

/* CPL 3, IF=1: 1 found, 0 out of time, 2 the driver stalled on a full queue. */
static uint64_t echo_user(void *arg)
{
    struct echo_job *job = arg;
    for (;;) {
        uint64_t cons = rtl_rx_cons, prod = rtl_rx_prod;
        while (cons < prod) {
            const struct rtl_rx_entry *e = rtl_rx_entry(cons);
            const uint8_t *f = rtl_rx_data(cons);
            cons++;
            uint32_t bad = net_check(f, e->len, e->copied, rtl.mac, net_peer_mac,
                                     NET_STAMP_OFFSET + 8);
            if (bad) {
                job->bad++;
                job->bad_bits |= bad;
                continue;
            }
            uint32_t seq = net_seq(f);
            if (seq != job->want) {
                job->late++;
                continue;
            }
            job->rtt = e->tsc - stamp_of(f);
            job->to_irq = rtl_irq_tsc - stamp_of(f);
            rtl_rx_cons = cons;
            return 1;
        }
        rtl_rx_cons = cons;
        if (rtl_rx_stalled)
            return 2;                           /* to CPL 0: rtl_rx_resume() */
        if (rdtsc() > job->deadline)
            return 0;
        __asm__ volatile("pause");
    }
}

int scn_net_echo(const struct multiboot_info *mbi)
{
    uint64_t n, ms;
    uint32_t size;
    if (arg_u64("net-echo", "n", DEFAULT_N, &n) || arg_u64("net-echo", "ms", DEFAULT_MS, &ms) ||
        net_arg_size("net-echo", RTL_MIN_FRAME, &size))
        return STATUS_USAGE;
    if (n == 0 || n > NET_RTT_MAX) {
        kprintf("RESULT error bad-arg scenario=net-echo key=n value=%s\n", cmdline_get("n"));
        return STATUS_USAGE;
    }
    int st = net_setup("net-echo", mbi, n * NET_TX_STRIDE, 0);
    if (st != STATUS_OK)
        return st;
    net_build_pool(n, size, net_peer_mac);

    uint64_t *rtt = (uint64_t *)(uintptr_t)NET_RTT_AREA;
    uint64_t got = 0, lost = 0, late = 0, bad = 0, wait = tsc_us(ms * 1000);
    uint64_t submit_sum = 0, to_irq_sum = 0;
    uint32_t bad_bits = 0;
    int e = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t seq = 0; seq < n && !e; seq++) {
        uint8_t *f = (uint8_t *)(uintptr_t)net_pool_phys(seq);
        e = rtl_tx_wait(RTL_TX_SLOTS);
        if (e)
            break;
        uint64_t now = rdtsc();
        *(uint64_t *)(f + NET_STAMP_OFFSET) = now;
        rtl_tx_submit(net_pool_phys(seq), size);
        submit_sum += rdtsc() - now;
        struct echo_job job = { (uint32_t)seq, now + wait, 0, 0, 0, 0, 0 };
        uint64_t saved = user_rflags;
        user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
        uint64_t found;
        while ((found = run_user(echo_user, &job)) == 2)
            rtl_rx_resume();
        user_rflags = saved;
        late += job.late;
        bad += job.bad;
        bad_bits |= job.bad_bits;
        if (found) {
            rtt[got++] = job.rtt;
            to_irq_sum += job.to_irq;
        }
        else
            lost++;
    }
    if (!e)
        e = rtl_tx_wait(1);
    uint64_t cycles = rdtsc() - t0;
    if (bad)
        kprintf("net-echo: %lu bad frames, check bits 0x%x\n", bad, bad_bits);
    if (e)
        kprintf("net-echo: a transmit slot did not come back\n");

    uint64_t p50 = 0, p99 = 0, max = 0, min = 0, sum = 0;
    if (got) {
        net_sort_u64(rtt, got);
        for (uint64_t i = 0; i < got; i++)
            sum += rtt[i];
        p50 = rtt[(got - 1) * 50 / 100];
        p99 = rtt[(got - 1) * 99 / 100];
        min = rtt[0];
        max = rtt[got - 1];
    }
    const struct tsc_info *tsc = tsc_info();
    int ok = !e && got == n && !bad && !net_driver_trouble();
    kprintf("RESULT net-echo ok=%d n=%lu size=%u got=%lu lost=%lu late=%lu bad=%lu "
            "rtt_p50_us=%lu rtt_p99_us=%lu rtt_max_us=%lu rtt_min_us=%lu rtt_mean_us=%lu "
            "submit_us_mean=%lu irq_us_mean=%lu cycles=%lu tsc_khz=%lu tsc_source=%s", ok, n,
            size, got, lost, late, bad, net_cycles_us(p50), net_cycles_us(p99),
            net_cycles_us(max), net_cycles_us(min), got ? net_cycles_us(sum / got) : 0,
            net_cycles_us(submit_sum / n), got ? net_cycles_us(to_irq_sum / got) : 0, cycles,
            tsc->khz, tsc->source);
    net_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
