/*
 * RTL8139 (PCI 10ec:8139) driver for the guest kit: the "normal" (not C+) register set of
 * the Realtek RTL8139C/D datasheets: I/O BAR0, a 64 KiB receive ring the chip writes
 * frames into, four transmit slots (TSAD0-3 / TSD0-3), interrupts on the PCI INTA line.
 *
 * Setup (rtl_init): find the function on bus 0, enable I/O decode and bus mastering
 * (placing BAR0 when nobody did), find its IRQ (the Interrupt Line register that firmware
 * programs; without firmware, route the slot's PIRQ on the PIIX3 ourselves, see
 * rtl8139.c), software reset (CR.RST, bounded), MAC from the 93C46 EEPROM (words 7-9,
 * bit-banged through 9346CR) and from IDR0-5, CR.RE|TE, RCR, TCR, receive buffer, IMR.
 *
 * Receive (IRQ handler, CPL 0): read ISR, write it back (write 1 to clear), then while
 * CR.BUFE is clear take the frame at the read offset: 4-byte header (status, length with
 * the CRC), checks (a bad status or length resets the receiver), copy of the frame (CRC
 * left out, at most rtl_options.rx_copy bytes) into a slot of the staging queue below with
 * the TSC, CAPR = next offset - 16. The queue is read at CPL 3 (native here) by the
 * scenarios; the handler never looks at payload bytes. When the queue is full the handler
 * stops and leaves the rest in the ring (rtl_rx_stalled; the consumer calls
 * rtl_rx_resume() at CPL 0 once it made room): the ring then fills and the chip drops.
 * Transmit: rtl_tx_submit() writes TSAD and TSD of the next slot (round robin, as the chip
 * sends them); slots come back when TSD shows TOK (or TUN/TABT): from the TOK interrupt,
 * or polled (rtl_tx_reclaim) when rtl_options.tx_irq is 0.
 *
 * Everything here runs at CPL 0, which this host emulates instruction by instruction:
 * the paths touch few registers (an interrupt: ISR read and write, per frame a CR read and
 * a CAPR write, the copy) and data are made and checked at CPL 3.
 */
#ifndef GUEST_RTL8139_H
#define GUEST_RTL8139_H

#include <stdint.h>

#define RTL_VENDOR          0x10EC
#define RTL_DEVICE          0x8139

/* Registers (offsets from BAR0). */
#define RTL_IDR0            0x00        /* MAC, 6 bytes */
#define RTL_MAR0            0x08        /* multicast hash, 8 bytes */
#define RTL_TSD0            0x10        /* transmit status of slot 0-3, dwords */
#define RTL_TSAD0           0x20        /* transmit start address of slot 0-3, dwords */
#define RTL_RBSTART         0x30        /* receive buffer start (physical) */
#define RTL_CR              0x37        /* command */
#define RTL_CAPR            0x38        /* current address of packet read (minus 16) */
#define RTL_CBR             0x3A        /* current buffer address: where the chip writes */
#define RTL_IMR             0x3C
#define RTL_ISR             0x3E        /* write 1 to clear */
#define RTL_TCR             0x40
#define RTL_RCR             0x44
#define RTL_MPC             0x4C        /* missed packet counter (24 bits); a write clears */
#define RTL_9346CR          0x50

#define RTL_CR_BUFE         0x01        /* receive buffer empty */
#define RTL_CR_TE           0x04
#define RTL_CR_RE           0x08
#define RTL_CR_RST          0x10

#define RTL_INT_ROK         0x0001
#define RTL_INT_RER         0x0002
#define RTL_INT_TOK         0x0004
#define RTL_INT_TER         0x0008
#define RTL_INT_RXOVW       0x0010      /* receive buffer overflow */
#define RTL_INT_PUN         0x0020      /* packet underrun / link change */
#define RTL_INT_FOVW        0x0040      /* receive FIFO overflow */
#define RTL_INT_TIMEOUT     0x4000
#define RTL_INT_SERR        0x8000

#define RTL_TSD_SIZE_MASK   0x1FFF
#define RTL_TSD_OWN         0x2000      /* the chip moved the frame into its FIFO */
#define RTL_TSD_TUN         0x4000
#define RTL_TSD_TOK         0x8000
#define RTL_TSD_ERTXTH_SHIFT 16         /* early transmit threshold, 32-byte units */
#define RTL_TSD_TABT        0x40000000u

#define RTL_TCR_MXDMA_2048  (7u << 8)
#define RTL_TCR_IFG_NORMAL  (3u << 24)  /* 9.6 us at 10 Mb/s, 960 ns at 100 */
#define RTL_TCR_VERSION_MASK 0x7CC00000u /* HWVERID_A bits 30:26, HWVERID_B bits 23:22 */

#define RTL_RCR_AAP         0x0001      /* all physical addresses (promiscuous) */
#define RTL_RCR_APM         0x0002      /* our MAC */
#define RTL_RCR_AM          0x0004      /* multicast by the MAR hash */
#define RTL_RCR_AB          0x0008      /* broadcast */
#define RTL_RCR_WRAP        0x0080      /* 8-32K rings: frames may run past the end */
#define RTL_RCR_MXDMA_UNLIM (7u << 8)
#define RTL_RCR_RBLEN_64K   (3u << 11)  /* 64K + 16 bytes */
#define RTL_RCR_RXFTH_NONE  (7u << 13)  /* move a frame only when it is complete */

#define RTL_RX_OK           0x0001      /* receive header status bits */
#define RTL_RX_FAE          0x0002
#define RTL_RX_CRC          0x0004
#define RTL_RX_LONG         0x0008
#define RTL_RX_RUNT         0x0010
#define RTL_RX_ISE          0x0020
#define RTL_RX_BAR          0x2000      /* broadcast */
#define RTL_RX_PAM          0x4000      /* physical address matched */
#define RTL_RX_MAR          0x8000      /* multicast */
#define RTL_RX_EARLY_LEN    0xFFF0      /* a header the chip is still writing */

#define RTL_9346_PROGRAM    0x80        /* EEM1:0 = 10: EECS/EESK/EEDI drive the pins */
#define RTL_9346_EECS       0x08
#define RTL_9346_EESK       0x04
#define RTL_9346_EEDI       0x02
#define RTL_9346_EEDO       0x01

#define RTL_EEPROM_ID       0x8129      /* word 0 of an RTL8129/8139 EEPROM */
#define RTL_EEPROM_MAC_WORD 7           /* words 7-9: the MAC, low byte first */

#define RTL_TX_SLOTS        4
#define RTL_MIN_FRAME       60          /* without the CRC */
#define RTL_MAX_FRAME       1514
#define RTL_ETH_CRC         4

/* Physical memory (identity-mapped; the kernel ends well below 4 MiB). */
#define RTL_AREA            0x400000ULL
#define RTL_RX_RING         RTL_AREA                    /* 64K + 16, and slack */
#define RTL_RX_RING_LEN     0x10000u
#define RTL_RXQ_ENTRIES     (RTL_AREA + 0x30000)        /* staging queue descriptors */
#define RTL_RXQ_DATA        (RTL_AREA + 0x40000)        /* staging queue frames */
#define RTL_RXQ_SLOTS       1024u
#define RTL_RXQ_SLOT_BYTES  2048u
#define RTL_AREA_END        (RTL_RXQ_DATA + RTL_RXQ_SLOTS * RTL_RXQ_SLOT_BYTES)

#define RTL_IRQ_DEFAULT     11          /* where the driver routes INTA without firmware */
#define RTL_RESET_TIMEOUT_MS 100
#define RTL_TX_TIMEOUT_MS   1000        /* a slot that does not come back in this time */

/* One received frame in the staging queue (written at CPL 0, read at CPL 3). */
struct rtl_rx_entry {
    uint64_t tsc;               /* when the driver took it from the ring */
    uint32_t len;               /* frame bytes without the CRC */
    uint16_t status;            /* receive header status */
    uint16_t copied;            /* bytes in the slot: min(len, rx_copy) */
};

struct rtl_nic {
    uint8_t pci_bus, pci_dev, pci_fn, pin, pirq;
    uint16_t pci_command_before, pci_command;
    int bar0_assigned;          /* BAR0 was 0 and the driver placed it */
    int routed;                 /* no Interrupt Line from firmware: the driver routed INTA */
    int elcr_set;               /* the driver set the IRQ's ELCR bit (level) */
    uint16_t io;
    uint8_t irq, line_before;
    uint16_t eeprom_id;
    uint8_t mac_eeprom[6], mac[6];      /* mac: IDR0-5 */
    uint32_t tcr;               /* as read after reset: version bits */
    uint32_t reset_polls;       /* CR reads until RST cleared */
};

/* Set before rtl_init(); it keeps them. */
struct rtl_options {
    int tx_irq;                 /* 1: TOK interrupt frees slots; 0: polled, TOK not in IMR */
    uint32_t rx_copy;           /* bytes of each frame copied to staging; 0: all */
};

struct rtl_stats {
    uint64_t irqs, isr_zero;            /* handler runs; runs with ISR = 0 */
    uint64_t rx_frames, rx_bytes;       /* taken from the ring (bytes without CRC) */
    uint64_t rx_bad, rx_resets;         /* bad header status or length; receiver resets */
    uint64_t rx_overflow, rx_fifo_overflow, rx_err_irqs;        /* ISR RXOVW, FOVW, RER */
    uint64_t rx_stalls;                 /* drains stopped by a full staging queue */
    uint64_t rx_max_per_irq;
    uint64_t tx_frames, tx_ok, tx_errors, tx_timeouts, tx_err_irqs;
    uint64_t other_irqs;                /* ISR bits outside the above */
};

extern struct rtl_nic rtl;
extern struct rtl_options rtl_options;
extern struct rtl_stats rtl_stats;

/* Staging queue: rtl_rx_prod advances in the handler, rtl_rx_cons at CPL 3. */
extern volatile uint64_t rtl_rx_prod, rtl_rx_cons;
/* The handler left frames in the ring for want of room in the staging queue. */
extern volatile int rtl_rx_stalled;
/* Completed transmit slots (TOK or error) and the TSC at the latest completion. */
extern volatile uint64_t rtl_tx_done, rtl_tx_done_tsc;
/* TSC at the entry of the latest interrupt handler run. */
extern volatile uint64_t rtl_irq_tsc;

static inline struct rtl_rx_entry *rtl_rx_entry(uint64_t i)
{
    return (struct rtl_rx_entry *)(uintptr_t)RTL_RXQ_ENTRIES + (i % RTL_RXQ_SLOTS);
}

static inline uint8_t *rtl_rx_data(uint64_t i)
{
    return (uint8_t *)(uintptr_t)(RTL_RXQ_DATA + (i % RTL_RXQ_SLOTS) * RTL_RXQ_SLOT_BYTES);
}

/* pic_init() first. Returns 0, or -1 with *why naming the failed step. */
int rtl_init(const char **why);

/* Hand a frame at physical address phys (32-bit, dword aligned) of len bytes to the next
 * transmit slot. -1 when all four are in flight (nothing written). */
int rtl_tx_submit(uint32_t phys, uint32_t len);
unsigned rtl_tx_in_flight(void);
/* Read TSD of the oldest slots in flight and free those the chip finished. */
void rtl_tx_reclaim(void);
/* Until fewer than `max_in_flight` slots are in flight: at CPL 3 with IF=1 for the TOK
 * interrupt (tx_irq), else polling TSD at CPL 0; bounded by RTL_TX_TIMEOUT_MS.
 * 0, or -1 on timeout (counted in tx_timeouts). */
int rtl_tx_wait(unsigned max_in_flight);

/* At CPL 0, by a consumer that found the queue empty and rtl_rx_stalled set: clears the
 * flag and drains the ring as the handler does. */
void rtl_rx_resume(void);

uint32_t rtl_missed(void);              /* MPC */
/* "8139C+" and so on for the TCR version bits, "unknown" otherwise. */
const char *rtl_chip_name(uint32_t tcr);

#endif
