/*
 * RTL8139 driver (see rtl8139.h).
 *
 * Port traffic (CPL 0, every access is a VM exit):
 *   interrupt: ISR read, ISR write; per frame: CR read (BUFE), CAPR write; one more CR
 *              read that finds BUFE set; TOK: TSD read per finished slot.
 *   transmit:  TSAD write, TSD write.
 * plus the 8259 traffic of IRQ_FLOW_ACK (pic.c). The frame copy into the staging queue is
 * `rep movsq`, one emulated instruction for up to 190 quadwords.
 */
#include "rtl8139.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "pci.h"
#include "pic.h"
#include "tsc.h"

#define PCI_INTERRUPT_LINE  0x3C        /* byte: 0x3C line, 0x3D pin (1 = INTA) */
#define PCI_LINE_NONE       0xFF
#define BAR0_DEFAULT_PORT   0xC100      /* where the driver puts an unassigned BAR0 */

/* PIIX3 function 0 (PCI-to-ISA bridge) at 00:01.0: PIRQ route control, 82371SB 2.3.8. */
#define PIIX3_DEV           1
#define PIIX3_VENDOR_DEVICE 0x70008086u
#define PIIX3_PIRQRC        0x60        /* PIRQA-D at 0x60-0x63: bit 7 off, bits 3:0 IRQ */

#define RX_HEADER           4
#define RX_LEN_MIN          (RTL_MIN_FRAME + RTL_ETH_CRC)
#define RX_LEN_MAX          (1518 + RTL_ETH_CRC)        /* a tagged frame fits */
#define RX_DRAIN_MAX        RTL_RXQ_SLOTS               /* bound on one handler run */
#define CAPR_BIAS           16
#define TX_ERTXTH           (256 / 32)                  /* start sending at 256 bytes */

#define IMR_BASE (RTL_INT_ROK | RTL_INT_RER | RTL_INT_TER | RTL_INT_RXOVW | RTL_INT_FOVW)

struct rtl_nic rtl;
struct rtl_options rtl_options;
struct rtl_stats rtl_stats;
volatile uint64_t rtl_rx_prod, rtl_rx_cons;
volatile int rtl_rx_stalled;
volatile uint64_t rtl_tx_done, rtl_tx_done_tsc;
volatile uint64_t rtl_irq_tsc;

static uint32_t rx_off;                 /* read offset in the ring */
static unsigned tx_cur, tx_dirty;       /* next slot to fill, oldest slot in flight */
static uint16_t imr;

/* Whole quadwords, rounded up: the source may be read up to 7 bytes past the end (the
 * ring has slack), the destination is a 2 KiB slot. */
static inline void copy_qwords(void *dst, const void *src, uint64_t bytes)
{
    uint64_t n = (bytes + 7) / 8;
    __asm__ volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* --- receive -------------------------------------------------------------------------- */

static void rx_program(void)
{
    outl(rtl.io + RTL_RBSTART, (uint32_t)RTL_RX_RING);
    outl(rtl.io + RTL_RCR, RTL_RCR_APM | RTL_RCR_AM | RTL_RCR_AB | RTL_RCR_MXDMA_UNLIM |
                           RTL_RCR_RBLEN_64K | RTL_RCR_RXFTH_NONE);
    rx_off = 0;
    outw(rtl.io + RTL_CAPR, (uint16_t)(0 - CAPR_BIAS));
}

/*
 * A header with a bad status or length: the ring can no longer be walked. Turn the
 * receiver off and on and program it again, as drivers for this chip do; clearing RE
 * empties the ring (read and write pointers back to the start). If the chip still shows
 * a write pointer elsewhere, a software reset does it for sure (and frees the TX slots).
 */
static void rx_reset(void)
{
    rtl_stats.rx_resets++;
    outb(rtl.io + RTL_CR, RTL_CR_TE);
    outb(rtl.io + RTL_CR, RTL_CR_RE | RTL_CR_TE);
    rx_program();
    if (inw(rtl.io + RTL_CBR) == 0)
        return;
    outb(rtl.io + RTL_CR, RTL_CR_RST);
    for (unsigned i = 0; i < 1000 && inb(rtl.io + RTL_CR) & RTL_CR_RST; i++)
        ;
    outb(rtl.io + RTL_CR, RTL_CR_RE | RTL_CR_TE);
    rx_program();
    outl(rtl.io + RTL_TCR, RTL_TCR_MXDMA_2048 | RTL_TCR_IFG_NORMAL);
    outl(rtl.io + RTL_MAR0, 0xFFFFFFFFu);
    outl(rtl.io + RTL_MAR0 + 4, 0xFFFFFFFFu);
    outw(rtl.io + RTL_IMR, imr);
    rtl_stats.tx_errors += (tx_cur - tx_dirty) & 0xFF;   /* in flight: lost */
    rtl_tx_done += (tx_cur - tx_dirty) & 0xFF;
    tx_cur = tx_dirty = 0;
}

static void rx_take(uint32_t off, uint32_t len, uint16_t status)
{
    uint64_t tsc = rdtsc();                     /* before the copy */
    uint32_t frame = len - RTL_ETH_CRC;
    uint64_t i = rtl_rx_prod;
    uint32_t want = rtl_options.rx_copy && rtl_options.rx_copy < frame ? rtl_options.rx_copy
                                                                        : frame;
    const uint8_t *ring = (const uint8_t *)(uintptr_t)RTL_RX_RING;
    uint8_t *dst = rtl_rx_data(i);
    uint32_t start = (off + RX_HEADER) & (RTL_RX_RING_LEN - 1);
    uint32_t first = RTL_RX_RING_LEN - start;           /* bytes before the ring's end */
    if (want <= first) {
        copy_qwords(dst, ring + start, want);
    } else {
        copy_qwords(dst, ring + start, first);
        copy_qwords(dst + first, ring, want - first);
    }
    *rtl_rx_entry(i) = (struct rtl_rx_entry){ tsc, frame, status, (uint16_t)want };
    rtl_rx_prod = i + 1;
    rtl_stats.rx_frames++;
    rtl_stats.rx_bytes += frame;
}

/* Frames from the ring into the staging queue while the ring has some and the queue has
 * room. A full queue leaves the rest in the ring (the chip drops what does not fit there:
 * RXOVW, MPC) and sets rtl_rx_stalled: the consumer calls rtl_rx_resume() once it has
 * made room, since no interrupt will come for frames already in the ring. */
static void rx_drain(void)
{
    const uint8_t *ring = (const uint8_t *)(uintptr_t)RTL_RX_RING;
    uint64_t n = 0, room = RTL_RXQ_SLOTS - (rtl_rx_prod - rtl_rx_cons);
    if (room > RX_DRAIN_MAX)
        room = RX_DRAIN_MAX;
    while (!(inb(rtl.io + RTL_CR) & RTL_CR_BUFE)) {
        if (n == room) {
            rtl_rx_stalled = 1;
            rtl_stats.rx_stalls++;
            break;
        }
        uint32_t header = *(const volatile uint32_t *)(ring + rx_off);
        uint16_t status = (uint16_t)header, len = (uint16_t)(header >> 16);
        if (len == RTL_RX_EARLY_LEN)
            break;                              /* still being written */
        if (!(status & RTL_RX_OK) || len < RX_LEN_MIN || len > RX_LEN_MAX) {
            rtl_stats.rx_bad++;
            rx_reset();
            break;
        }
        rx_take(rx_off, len, status);
        rx_off = (rx_off + RX_HEADER + len + 3) & ~3u & (RTL_RX_RING_LEN - 1);
        outw(rtl.io + RTL_CAPR, (uint16_t)(rx_off - CAPR_BIAS));
        n++;
    }
    if (n > rtl_stats.rx_max_per_irq)
        rtl_stats.rx_max_per_irq = n;
}

void rtl_rx_resume(void)
{
    if (!rtl_rx_stalled)
        return;
    rtl_rx_stalled = 0;
    rx_drain();
}

/* --- transmit ------------------------------------------------------------------------- */

unsigned rtl_tx_in_flight(void) { return (tx_cur - tx_dirty) & 0xFF; }

void rtl_tx_reclaim(void)
{
    unsigned dirty = tx_dirty;
    while (dirty != tx_cur) {
        uint32_t tsd = inl(rtl.io + RTL_TSD0 + 4 * (dirty % RTL_TX_SLOTS));
        if (!(tsd & (RTL_TSD_TOK | RTL_TSD_TUN | RTL_TSD_TABT)))
            break;
        if (tsd & RTL_TSD_TOK)
            rtl_stats.tx_ok++;
        else
            rtl_stats.tx_errors++;
        dirty = (dirty + 1) & 0xFF;
    }
    if (dirty != tx_dirty) {
        rtl_tx_done += (dirty - tx_dirty) & 0xFF;
        rtl_tx_done_tsc = rdtsc();
        tx_dirty = dirty;
    }
}

int rtl_tx_submit(uint32_t phys, uint32_t len)
{
    if (rtl_tx_in_flight() >= RTL_TX_SLOTS)
        return -1;
    unsigned slot = tx_cur % RTL_TX_SLOTS;
    outl(rtl.io + RTL_TSAD0 + 4 * slot, phys);
    outl(rtl.io + RTL_TSD0 + 4 * slot, (len & RTL_TSD_SIZE_MASK) |
                                       (uint32_t)TX_ERTXTH << RTL_TSD_ERTXTH_SHIFT);
    tx_cur = (tx_cur + 1) & 0xFF;
    rtl_stats.tx_frames++;
    return 0;
}

int rtl_tx_wait(unsigned max_in_flight)
{
    if (rtl_tx_in_flight() < max_in_flight)
        return 0;                               /* the common case: no clock, no division */
    uint64_t timeout = tsc_us(RTL_TX_TIMEOUT_MS * 1000);
    uint64_t deadline = rdtsc() + timeout;
    while (rtl_tx_in_flight() >= max_in_flight) {
        if (rtl_options.tx_irq) {
            irq_wait(&rtl_tx_done, rtl_tx_done + 1, timeout);
            if (rtl_tx_in_flight() >= max_in_flight)
                rtl_tx_reclaim();               /* a lost interrupt: look anyway */
        } else {
            rtl_tx_reclaim();
        }
        if (rtl_tx_in_flight() >= max_in_flight && rdtsc() > deadline) {
            rtl_stats.tx_timeouts++;
            return -1;
        }
    }
    return 0;
}

/* --- interrupt ------------------------------------------------------------------------ */

static void rtl_irq(unsigned irq)
{
    (void)irq;
    rtl_irq_tsc = rdtsc();
    rtl_stats.irqs++;
    uint16_t isr = inw(rtl.io + RTL_ISR);
    if (!isr) {
        rtl_stats.isr_zero++;                   /* a shared line, or already handled */
        return;
    }
    outw(rtl.io + RTL_ISR, isr);
    if (isr & RTL_INT_RXOVW)
        rtl_stats.rx_overflow++;
    if (isr & RTL_INT_FOVW)
        rtl_stats.rx_fifo_overflow++;
    if (isr & RTL_INT_RER)
        rtl_stats.rx_err_irqs++;
    if (isr & RTL_INT_TER)
        rtl_stats.tx_err_irqs++;
    if (isr & ~(IMR_BASE | RTL_INT_TOK))
        rtl_stats.other_irqs++;
    if (isr & (RTL_INT_ROK | RTL_INT_RER | RTL_INT_RXOVW | RTL_INT_FOVW))
        rx_drain();
    if (isr & (RTL_INT_TOK | RTL_INT_TER))
        rtl_tx_reclaim();
}

/* --- setup ---------------------------------------------------------------------------- */

static void elcr_level(uint8_t irq)
{
    uint16_t port = irq & 8 ? PIC_ELCR_SLAVE : PIC_ELCR_MASTER;
    uint8_t bit = (uint8_t)(1u << (irq & 7)), v = inb(port);
    if (!(v & bit)) {
        outb(port, v | bit);
        rtl.elcr_set = 1;
    }
}

/*
 * The IRQ: firmware (SeaBIOS under QEMU) routes every PCI INTx pin to an ISA IRQ through
 * the PIIX3's PIRQ route control registers, makes that IRQ level-triggered in the ELCR
 * and writes it to the function's Interrupt Line register. Without firmware (pyhvm boots
 * the kernel directly) the line reads 0 or 0xFF: then the driver does what firmware
 * would: the slot's INTA reaches PIRQ (device + pin - 2) mod 4 (the board's swizzle),
 * that PIRQ goes to IRQ 11, IRQ 11 is set level-triggered, and the line register says 11.
 * Either way the ELCR bit is made sure of: a PCI interrupt is level-triggered.
 */
static int setup_irq(const struct pci_function *f, const char **why)
{
    uint32_t v = pci_read32(f, PCI_INTERRUPT_LINE);
    rtl.line_before = (uint8_t)v;
    rtl.pin = (uint8_t)(v >> 8);
    if (rtl.pin < 1 || rtl.pin > 4) {
        *why = "no-interrupt-pin";
        return -1;
    }
    rtl.pirq = (uint8_t)((rtl.pci_dev + rtl.pin - 2) % 4);
    uint8_t line = rtl.line_before;
    if (line == 0 || line == 2 || line >= 16) {
        struct pci_function isa = { 0, PIIX3_DEV, 0, 0, 0, 0, 0, 0, 0 };
        if (pci_read32(&isa, PCI_VENDOR_ID) != PIIX3_VENDOR_DEVICE) {
            *why = "no-piix3-to-route-inta";
            return -1;
        }
        uint32_t routes = pci_read32(&isa, PIIX3_PIRQRC);
        routes &= ~(0xFFu << (8 * rtl.pirq));
        routes |= (uint32_t)RTL_IRQ_DEFAULT << (8 * rtl.pirq);
        pci_write32(&isa, PIIX3_PIRQRC, routes);
        line = RTL_IRQ_DEFAULT;
        pci_write32(f, PCI_INTERRUPT_LINE, (v & ~0xFFu) | line);
        rtl.routed = 1;
    }
    rtl.irq = line;
    elcr_level(line);
    return 0;
}

static int setup_pci(const char **why)
{
    struct pci_function f;
    if (pci_find_device(RTL_VENDOR, RTL_DEVICE, &f)) {
        *why = "no-rtl8139";
        return -1;
    }
    rtl.pci_bus = f.bus;
    rtl.pci_dev = f.dev;
    rtl.pci_fn = f.fn;
    uint32_t bar0 = pci_read32(&f, PCI_BAR0);
    if (!(bar0 & PCI_BAR_IO)) {
        *why = "bar0-not-io";
        return -1;
    }
    if (!(bar0 & PCI_BAR_IO_MASK)) {                    /* nobody placed it: we do */
        pci_write32(&f, PCI_BAR0, BAR0_DEFAULT_PORT);
        bar0 = pci_read32(&f, PCI_BAR0);
        rtl.bar0_assigned = 1;
    }
    rtl.io = (uint16_t)(bar0 & PCI_BAR_IO_MASK);
    uint16_t want = PCI_COMMAND_IO | PCI_COMMAND_MASTER;
    rtl.pci_command_before = rtl.pci_command = pci_read16(&f, PCI_COMMAND);
    if ((rtl.pci_command & want) != want) {
        pci_write16(&f, PCI_COMMAND, rtl.pci_command | want);
        rtl.pci_command = pci_read16(&f, PCI_COMMAND);
    }
    if ((rtl.pci_command & want) != want) {
        *why = "pci-command-stuck";
        return -1;
    }
    return setup_irq(&f, why);
}

/*
 * 93C46 in 16-bit organization (64 words), bit-banged: chip select, then the READ command
 * (start bit 1, opcode 10, six address bits, MSB first, each latched on a rising EESK),
 * then sixteen data bits, MSB first, each driven on EEDO after a rising EESK (the EEPROM
 * puts a dummy 0 out after the address; the first rising edge after it brings D15).
 * Each step is one port write; the EEPROM's 1 us clock minimum is far below an exit.
 */
static uint16_t eeprom_read(uint8_t addr)
{
    uint16_t port = rtl.io + RTL_9346CR;
    uint32_t cmd = 1u << 8 | 2u << 6 | (addr & 0x3F);
    outb(port, RTL_9346_PROGRAM);
    outb(port, RTL_9346_PROGRAM | RTL_9346_EECS);
    for (int b = 8; b >= 0; b--) {
        uint8_t di = cmd >> b & 1 ? RTL_9346_EEDI : 0;
        outb(port, RTL_9346_PROGRAM | RTL_9346_EECS | di);
        outb(port, RTL_9346_PROGRAM | RTL_9346_EECS | di | RTL_9346_EESK);
    }
    outb(port, RTL_9346_PROGRAM | RTL_9346_EECS);
    uint16_t word = 0;
    for (int b = 0; b < 16; b++) {
        outb(port, RTL_9346_PROGRAM | RTL_9346_EECS | RTL_9346_EESK);
        word = (uint16_t)(word << 1 | (inb(port) & RTL_9346_EEDO));
        outb(port, RTL_9346_PROGRAM | RTL_9346_EECS);
    }
    outb(port, RTL_9346_PROGRAM);                       /* chip select off */
    outb(port, 0);                                      /* back to normal operation */
    return word;
}

uint32_t rtl_missed(void) { return inl(rtl.io + RTL_MPC) & 0xFFFFFF; }

const char *rtl_chip_name(uint32_t tcr)
{
    /* HWVERID values of the RTL8139 family datasheets. */
    static const struct { uint32_t id; const char *name; } chips[] = {
        { 0x40000000u, "8139" },  { 0x60000000u, "8139K" }, { 0x70000000u, "8139A" },
        { 0x78000000u, "8139B" }, { 0x7C000000u, "8130" },  { 0x74000000u, "8139C" },
        { 0x74800000u, "8139C+" }, { 0x74400000u, "8139D" }, { 0x78800000u, "8100" },
        { 0x74C00000u, "8101" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(chips); i++)
        if ((tcr & RTL_TCR_VERSION_MASK) == chips[i].id)
            return chips[i].name;
    return "unknown";
}

int rtl_init(const char **why)
{
    *why = "none";
    rtl = (struct rtl_nic){ 0 };
    rtl_stats = (struct rtl_stats){ 0 };
    rtl_rx_prod = rtl_rx_cons = 0;
    rtl_rx_stalled = 0;
    rtl_tx_done = rtl_tx_done_tsc = 0;
    tx_cur = tx_dirty = 0;
    if (setup_pci(why))
        return -1;

    outb(rtl.io + RTL_CR, RTL_CR_RST);
    uint64_t deadline = rdtsc() + tsc_us(RTL_RESET_TIMEOUT_MS * 1000);
    while (rtl.reset_polls++, inb(rtl.io + RTL_CR) & RTL_CR_RST)
        if (rdtsc() > deadline) {
            *why = "reset-timeout";
            return -1;
        }

    rtl.eeprom_id = eeprom_read(0);
    for (int w = 0; w < 3; w++) {
        uint16_t v = eeprom_read((uint8_t)(RTL_EEPROM_MAC_WORD + w));
        rtl.mac_eeprom[2 * w] = (uint8_t)v;
        rtl.mac_eeprom[2 * w + 1] = (uint8_t)(v >> 8);
    }
    uint32_t idr_lo = inl(rtl.io + RTL_IDR0);
    uint16_t idr_hi = inw(rtl.io + RTL_IDR0 + 4);
    for (int i = 0; i < 4; i++)
        rtl.mac[i] = (uint8_t)(idr_lo >> (8 * i));
    rtl.mac[4] = (uint8_t)idr_hi;
    rtl.mac[5] = (uint8_t)(idr_hi >> 8);
    rtl.tcr = inl(rtl.io + RTL_TCR);

    /* The datasheets want TE/RE on before TCR/RCR are written. */
    outb(rtl.io + RTL_CR, RTL_CR_RE | RTL_CR_TE);
    rx_program();
    outl(rtl.io + RTL_TCR, RTL_TCR_MXDMA_2048 | RTL_TCR_IFG_NORMAL);
    outl(rtl.io + RTL_MAR0, 0xFFFFFFFFu);              /* every multicast (AM) */
    outl(rtl.io + RTL_MAR0 + 4, 0xFFFFFFFFu);
    outw(rtl.io + RTL_ISR, 0xFFFF);
    imr = IMR_BASE | (rtl_options.tx_irq ? RTL_INT_TOK : 0);
    outw(rtl.io + RTL_IMR, imr);
    irq_attach(rtl.irq, rtl_irq, IRQ_FLOW_ACK);
    return 0;
}
