/*
 * net-tx: send N test frames (net.h layout) through the four transmit slots, timed.
 *   net-tx [n=1000] [size=1514] [bcast=0] [txirq=1]
 * Frames seq 0..n-1 of `size` bytes (60-1514) are made at CPL 3 beforehand, one per seq
 * in a pool (NET_TX_POOL), to NET_PEER_MAC (bcast=1: ff:ff:ff:ff:ff:ff). Each goes to the
 * next free slot (TSAD, TSD); when all four are in flight the sender waits for one to
 * come back: at CPL 3 for the TOK interrupt (txirq=1), or reading TSD (txirq=0).
 * The time runs from just before the first TSD write to the last completion (the TSC the
 * handler or the poll took when it saw TOK).
 * RESULT net-tx ok= n= size= sent= cycles= pps= mbps= ns_per_frame= tsc_khz= tsc_source= ...
 * sent: frames that completed with TOK; mbps: frame bytes (no CRC) in 10^6 bit/s.
 */
#include "cmdline.h"
#include "io.h"
#include "kit.h"
#include "net.h"
#include "rtl8139.h"
#include "scenario.h"
#include "tsc.h"

int scn_net_tx(const struct multiboot_info *mbi)
{
    uint64_t n, bcast;
    uint32_t size;
    if (arg_u64("net-tx", "n", 1000, &n) || arg_u64("net-tx", "bcast", 0, &bcast) ||
        net_arg_size("net-tx", RTL_MAX_FRAME, &size))
        return STATUS_USAGE;
    if (n == 0 || n > 0xFFFFFFFFu) {
        kprintf("RESULT error bad-arg scenario=net-tx key=n value=%s\n", cmdline_get("n"));
        return STATUS_USAGE;
    }
    int st = net_setup("net-tx", mbi, n * NET_TX_STRIDE, 0);
    if (st != STATUS_OK)
        return st;
    net_build_pool(n, size, bcast ? net_broadcast_mac : net_peer_mac);

    int e = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t seq = 0; seq < n && !e; seq++) {
        e = rtl_tx_wait(RTL_TX_SLOTS);
        if (!e)
            e = rtl_tx_submit(net_pool_phys(seq), size);
    }
    if (!e)
        e = rtl_tx_wait(1);                     /* all back */
    uint64_t cycles = rtl_tx_done_tsc > t0 ? rtl_tx_done_tsc - t0 : 0;
    if (e)
        kprintf("net-tx: stopped after %lu frames: %s\n", rtl_stats.tx_frames,
                rtl_stats.tx_timeouts ? "a slot did not come back" : "submit refused");

    uint64_t pps, whole, hundredths;
    net_rate(rtl_stats.tx_ok, rtl_stats.tx_ok * size, cycles, &pps, &whole, &hundredths);
    const struct tsc_info *tsc = tsc_info();
    int ok = !e && !net_driver_trouble() && rtl_stats.tx_ok == n;
    kprintf("RESULT net-tx ok=%d n=%lu size=%u sent=%lu cycles=%lu pps=%lu mbps=%lu.%02lu "
            "ns_per_frame=%lu bcast=%d tsc_khz=%lu tsc_source=%s", ok, n, size,
            rtl_stats.tx_ok, cycles, pps, whole, hundredths,
            rtl_stats.tx_ok ? net_cycles_us(cycles * 1000) / rtl_stats.tx_ok : 0, bcast != 0,
            tsc->khz, tsc->source);
    net_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
