/* Shared parts of the net-* scenarios (see net.h). */
#include "net.h"
#include "cmdline.h"
#include "cpu.h"
#include "kit.h"
#include "multiboot.h"
#include "pic.h"
#include "rtl8139.h"
#include "tsc.h"

_Static_assert(RTL_AREA_END <= NET_RTT_AREA && NET_RTT_AREA + NET_RTT_MAX * 8 <= NET_TX_POOL,
               "driver area, round trips and frame pool overlap");

const uint8_t net_peer_mac[6] = NET_PEER_MAC_INIT;
const uint8_t net_broadcast_mac[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };

void net_format_mac(char out[18], const uint8_t mac[6])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[3 * i] = hex[mac[i] >> 4];
        out[3 * i + 1] = hex[mac[i] & 15];
        out[3 * i + 2] = i == 5 ? '\0' : ':';
    }
}

int net_arg_size(const char *scenario, uint64_t def, uint32_t *size)
{
    uint64_t v;
    if (arg_u64(scenario, "size", def, &v))
        return -1;
    if (v < RTL_MIN_FRAME || v > RTL_MAX_FRAME) {
        kprintf("RESULT error bad-arg scenario=%s key=size value=%s\n", scenario,
                cmdline_get("size"));
        return -1;
    }
    *size = (uint32_t)v;
    return 0;
}

int net_setup(const char *scenario, const struct multiboot_info *mbi, uint64_t pool_bytes,
              uint32_t rx_copy)
{
    uint64_t txirq;
    if (arg_u64(scenario, "txirq", 1, &txirq))
        return STATUS_USAGE;
    rtl_options = (struct rtl_options){ txirq != 0, rx_copy };
    uint64_t need = NET_TX_POOL + pool_bytes;
    uint64_t ram = mbi->flags & MBI_FLAG_MEM ? (1024ULL + mbi->mem_upper) << 10 : 0;
    if ((uintptr_t)_kernel_end > RTL_AREA || ram < need || need > (1ULL << 32)) {
        kprintf("RESULT %s ok=0 error=memory need=0x%lx ram=0x%lx\n", scenario, need, ram);
        return STATUS_FAIL;
    }
    (void)tsc_info();                   /* calibrate before any timing or timeout */
    pic_init();
    const char *why;
    if (rtl_init(&why)) {
        kprintf("RESULT %s ok=0 error=%s\n", scenario, why);
        return STATUS_FAIL;
    }
    char mac[18], mac_ee[18];
    net_format_mac(mac, rtl.mac);
    net_format_mac(mac_ee, rtl.mac_eeprom);
    kprintf("net: pci=%02x:%02x.%x id=%04x:%04x io=0x%x pci_cmd=0x%04x->0x%04x "
            "bar0_assigned=%d irq=%u irq_source=%s line_before=%u pin=%u pirq=%c elcr_set=%d\n",
            rtl.pci_bus, rtl.pci_dev, rtl.pci_fn, RTL_VENDOR, RTL_DEVICE, rtl.io,
            rtl.pci_command_before, rtl.pci_command, rtl.bar0_assigned, rtl.irq,
            rtl.routed ? "routed" : "firmware", rtl.line_before, rtl.pin, 'A' + rtl.pirq,
            rtl.elcr_set);
    kprintf("net: mac=%s eeprom_mac=%s eeprom_id=0x%04x tcr=0x%08x chip=%s reset_polls=%u\n",
            mac, mac_ee, rtl.eeprom_id, rtl.tcr, rtl_chip_name(rtl.tcr), rtl.reset_polls);
    return STATUS_OK;
}

/* --- frames (CPL 3) ------------------------------------------------------------------- */

struct pool_job {
    uint64_t n;
    uint32_t size;
    const uint8_t *dst, *src;
};

static void build_frame(uint8_t *f, uint32_t seq, uint32_t size, const uint8_t *dst,
                        const uint8_t *src)
{
    for (int i = 0; i < 6; i++) {
        f[i] = dst[i];
        f[6 + i] = src[i];
    }
    f[12] = NET_ETHERTYPE >> 8;
    f[13] = NET_ETHERTYPE & 0xFF;
    f[14] = (uint8_t)(seq >> 24);
    f[15] = (uint8_t)(seq >> 16);
    f[16] = (uint8_t)(seq >> 8);
    f[17] = (uint8_t)seq;
    for (uint32_t k = NET_PATTERN_OFFSET; k < size; k++)
        f[k] = net_pattern(seq, k);
}

static uint64_t pool_user(void *arg)            /* CPL 3 */
{
    const struct pool_job *job = arg;
    for (uint64_t s = 0; s < job->n; s++)
        build_frame((uint8_t *)(uintptr_t)net_pool_phys(s), (uint32_t)s, job->size, job->dst,
                    job->src);
    return 0;
}

void net_build_pool(uint64_t n, uint32_t size, const uint8_t dst[6])
{
    struct pool_job job = { n, size, dst, rtl.mac };
    run_user(pool_user, &job);
}

uint32_t net_check(const uint8_t *f, uint32_t len, uint32_t copied, const uint8_t *dst,
                   const uint8_t *src, uint32_t pattern_from)
{
    if (len < RTL_MIN_FRAME || copied < NET_HEADER_BYTES)
        return NET_BAD_SHORT;
    if (copied < len)
        len = copied;                           /* a partial copy: check what is there */
    uint32_t bad = 0;
    if (f[12] != (NET_ETHERTYPE >> 8) || f[13] != (NET_ETHERTYPE & 0xFF))
        bad |= NET_BAD_TYPE;
    for (int i = 0; i < 6; i++)
        if ((dst && f[i] != dst[i]) || (src && f[6 + i] != src[i]))
            bad |= NET_BAD_MAC;
    uint32_t seq = net_seq(f);
    uint8_t diff = 0;
    for (uint32_t k = pattern_from; k < len; k++)
        diff |= (uint8_t)(f[k] ^ net_pattern(seq, k));
    if (diff)
        bad |= NET_BAD_PATTERN;
    return bad;
}

/* --- numbers -------------------------------------------------------------------------- */

uint64_t net_cycles_us(uint64_t cycles)
{
    return cycles * 1000 / tsc_info()->khz;
}

void net_rate(uint64_t frames, uint64_t bytes, uint64_t cycles, uint64_t *pps,
              uint64_t *mbps_whole, uint64_t *mbps_hundredths)
{
    uint64_t khz = tsc_info()->khz;
    *pps = cycles ? frames * khz * 1000 / cycles : 0;
    /* bytes * 8 / (cycles / (khz * 1000)) / 1e6, times 100 */
    uint64_t x100 = cycles ? bytes * 8 * khz / cycles / 10 : 0;
    *mbps_whole = x100 / 100;
    *mbps_hundredths = x100 % 100;
}

void net_print_stats(void)
{
    kprintf(" irqs=%lu isr_zero=%lu rx_frames=%lu rx_bad=%lu rx_resets=%lu rx_overflow=%lu "
            "fifo_overflow=%lu rx_err_irqs=%lu rx_stalls=%lu max_per_irq=%lu tx_frames=%lu "
            "tx_ok=%lu tx_errors=%lu tx_timeouts=%lu missed=%u txirq=%d",
            rtl_stats.irqs, rtl_stats.isr_zero, rtl_stats.rx_frames, rtl_stats.rx_bad,
            rtl_stats.rx_resets, rtl_stats.rx_overflow, rtl_stats.rx_fifo_overflow,
            rtl_stats.rx_err_irqs, rtl_stats.rx_stalls, rtl_stats.rx_max_per_irq,
            rtl_stats.tx_frames, rtl_stats.tx_ok, rtl_stats.tx_errors, rtl_stats.tx_timeouts,
            rtl_missed(), rtl_options.tx_irq);
}

int net_driver_trouble(void)
{
    return rtl_stats.rx_bad || rtl_stats.tx_errors || rtl_stats.tx_timeouts ||
           rtl_stats.tx_err_irqs || rtl_stats.rx_err_irqs;
}

/* --- sorting (CPL 3) ------------------------------------------------------------------ */

struct sort_job {
    uint64_t *v, n;
};

static void sift_down(uint64_t *v, uint64_t root, uint64_t n)
{
    for (;;) {
        uint64_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && v[child + 1] > v[child])
            child++;
        if (v[root] >= v[child])
            return;
        uint64_t t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

static uint64_t sort_user(void *arg)            /* CPL 3 */
{
    struct sort_job *job = arg;
    uint64_t *v = job->v, n = job->n;
    for (uint64_t i = n / 2; i-- > 0;)
        sift_down(v, i, n);
    for (uint64_t end = n; end > 1; end--) {
        uint64_t t = v[0];
        v[0] = v[end - 1];
        v[end - 1] = t;
        sift_down(v, 0, end - 1);
    }
    return 0;
}

void net_sort_u64(uint64_t *v, uint64_t n)
{
    struct sort_job job = { v, n };
    run_user(sort_user, &job);
}
