/*
 * What the net-* scenarios share: setup (memory check, PIC, RTL8139 driver), the test
 * frame layout, its generation and check (at CPL 3: CPL 0 is emulated here), rates.
 *
 * Test frame (tests/netpeer.py builds and checks the same):
 *     0  destination MAC      net-tx/net-echo: the peer, NET_PEER_MAC (or broadcast with
 *                             bcast=1); net-rx: the guest's MAC
 *     6  source MAC           the sender's
 *    12  ethertype 0x88B5     (IEEE 802 local experimental ethertype 1), big-endian
 *    14  seq                  u32 big-endian, 0, 1, 2, ... per run
 *    18  pattern              byte k of the frame (k >= 18) = (k + 37 * seq) mod 256
 * net-echo overwrites bytes 18-25 with the guest's TSC at send (u64 little-endian); the
 * peer sends the frame back with the two MACs swapped and nothing else changed.
 * Frames are 60 to 1514 bytes (no CRC; the chip adds it).
 */
#ifndef GUEST_NET_H
#define GUEST_NET_H

#include <stdint.h>

struct multiboot_info;

#define NET_ETHERTYPE       0x88B5
#define NET_SEQ_OFFSET      14
#define NET_PATTERN_OFFSET  18
#define NET_STAMP_OFFSET    18
#define NET_PATTERN_MUL     37
#define NET_HEADER_BYTES    NET_PATTERN_OFFSET

/* The peer's MAC: locally administered, "pyhvm" in ASCII after the 02. */
#define NET_PEER_MAC_INIT   { 0x02, 0x70, 0x79, 0x68, 0x76, 0x6D }
extern const uint8_t net_peer_mac[6];
extern const uint8_t net_broadcast_mac[6];

/* Frames made in advance for net-tx / net-echo, one per seq, NET_TX_STRIDE apart. */
#define NET_RTT_AREA        0x700000ULL         /* net-echo: u64 per frame, 1 MiB */
#define NET_RTT_MAX         (0x100000 / 8)
#define NET_TX_POOL         0x800000ULL
#define NET_TX_STRIDE       1536u

/* Frame check results (bits). */
#define NET_BAD_SHORT       0x01        /* under 60 bytes, or under 18 of it staged */
#define NET_BAD_TYPE        0x02        /* ethertype */
#define NET_BAD_PATTERN     0x04
#define NET_BAD_MAC         0x08        /* destination / source not the expected ones */

static inline uint8_t net_pattern(uint32_t seq, uint32_t k)
{
    return (uint8_t)(k + NET_PATTERN_MUL * seq);
}

static inline uint32_t net_seq(const uint8_t *f)
{
    return (uint32_t)f[14] << 24 | (uint32_t)f[15] << 16 | (uint32_t)f[16] << 8 | f[17];
}

/*
 * Arguments common to the net scenarios: txirq=1 (0: TX slots polled, TOK not in IMR).
 * Checks RAM up to NET_TX_POOL + pool_bytes, calibrates the TSC, pic_init(), rtl_init()
 * (rx_copy: bytes staged per frame, 0 = all). On failure prints
 * "RESULT <scenario> ok=0 error=<why>" and returns STATUS_FAIL (STATUS_USAGE for a bad
 * argument); STATUS_OK otherwise, after two "net:" lines (PCI, IRQ, MAC, version).
 */
int net_setup(const char *scenario, const struct multiboot_info *mbi, uint64_t pool_bytes,
              uint32_t rx_copy);

/* size=B within 60..1514 (default def); -1 after a bad-arg RESULT line. */
int net_arg_size(const char *scenario, uint64_t def, uint32_t *size);

/* At CPL 3: frames seq 0..n-1 of `size` bytes at NET_TX_POOL + seq * NET_TX_STRIDE. */
void net_build_pool(uint64_t n, uint32_t size, const uint8_t dst[6]);

static inline uint32_t net_pool_phys(uint64_t seq)
{
    return (uint32_t)(NET_TX_POOL + seq * NET_TX_STRIDE);
}

/* Check a staged frame (len bytes, the first `copied` of them present: the pattern is
 * checked as far as they go) against the layout, the
 * pattern from byte pattern_from on (NET_PATTERN_OFFSET; net-echo: after the stamp); dst
 * and src NULL to skip that MAC. Returns NET_BAD_* bits, 0 when good. Any CPL (it is
 * meant for CPL 3: a full-size frame is ~1500 byte compares). */
uint32_t net_check(const uint8_t *f, uint32_t len, uint32_t copied, const uint8_t *dst,
                   const uint8_t *src, uint32_t pattern_from);

/* "aa:bb:cc:dd:ee:ff" into out[18]. */
void net_format_mac(char out[18], const uint8_t mac[6]);

/* Frames and bytes over TSC cycles: frames per second, and megabits per second (10^6
 * bit/s of frame bytes without the CRC) as whole part and hundredths. */
void net_rate(uint64_t frames, uint64_t bytes, uint64_t cycles, uint64_t *pps,
              uint64_t *mbps_whole, uint64_t *mbps_hundredths);

/* TSC cycles to microseconds (tsc_info()). */
uint64_t net_cycles_us(uint64_t cycles);

/* " irqs=.. isr_zero=.. rx_frames=.. rx_bad=.. rx_resets=.. rx_overflow=.. fifo_overflow=..
 * rx_err_irqs=.. rx_stalls=.. max_per_irq=.. tx_frames=.. tx_ok=.. tx_errors=..
 * tx_timeouts=.. missed=.. txirq=.." for the end of a RESULT line (no newline). */
void net_print_stats(void);

/* Whether the driver saw anything that makes a run fail whatever its counts. */
int net_driver_trouble(void);

/* At CPL 3: sort n u64 ascending (heapsort). */
void net_sort_u64(uint64_t *v, uint64_t n);

#endif
