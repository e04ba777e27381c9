/*
 * ATA/ATAPI-6 PIO and SFF-8038i bus-master DMA on the primary master (see ata.h).
 *
 * Port traffic per command (CPL 0, every access is a VM exit):
 *   issue:  Alternate Status (idle check; not when the handler has just read Status);
 *           DMA: PRD pointer (first time only), bus-master direction (when it changes);
 *           task file (5 writes LBA28, 9 LBA48); Command; DMA: bus-master start.
 *           PIO out: Alternate Status until DRQ, then the first sector (rep outsl).
 *   IRQ 14: bus-master Status; DMA: bus-master stop (direction kept); Status (acknowledges
 *           INTRQ); bus-master Status write (W1C) when Interrupt or Error was set;
 *           PIO: one sector.
 * Data moves with 32-bit string I/O (the PIIX turns a dword into two data-port words):
 * KVM batches `rep insl` into one exit per page, `rep outsl` takes one exit per dword.
 */
#include "ata.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "pci.h"
#include "pic.h"
#include "tsc.h"

#define PCI_CLASS_STORAGE   0x01
#define PCI_SUBCLASS_IDE    0x01
#define PROG_IF_PRIMARY_NATIVE 0x01     /* primary channel in PCI native mode */
#define PCI_BAR4            0x20
#define BM_DEFAULT_PORT     0xC000      /* where the driver puts an unassigned BAR4 */
#define PIIX_IDETIM         0x40        /* primary channel timing; bit 15: decode enable */
#define PIIX_IDETIM_IDE     0x8000
#define INTEL_VENDOR        0x8086

#define ID_CAPABILITIES     49
#define ID_CAP_DMA          (1u << 8)
#define ID_FIELD_VALIDITY   53
#define ID_VALID_88         (1u << 2)
#define ID_LBA28_SECTORS    60
#define ID_MWDMA            63
#define ID_COMMAND_SET_2    83
#define ID_CS2_LBA48        (1u << 10)
#define ID_CS2_FLUSH_EXT    (1u << 13)
#define ID_WORD_VALID_MASK  0xC000      /* words 83/84: bits 15:14 = 01b when valid */
#define ID_WORD_VALID       0x4000
#define ID_UDMA             88
#define ID_LBA48_SECTORS    100
#define ID_MODEL            27
#define ID_SERIAL           10
#define ID_INTEGRITY        255
#define ID_SIGNATURE        0xA5

#define DWORDS_PER_SECTOR   (ATA_SECTOR_SIZE / 4)

enum kind { KIND_RW, KIND_NODATA, KIND_IDENTIFY };

struct request {
    int active;
    enum kind kind;
    int write, dma, ext;
    uint8_t opcode;
    uint64_t lba;
    uint32_t count;
    uint8_t *pio;               /* next sector to move by PIO */
    uint32_t pio_left;          /* sectors still to move by PIO */
};

struct stream {
    int active, write, dma, result;
    uint64_t first, wrap, offset, left;
    uint32_t count;
    uint8_t *buf;
    volatile uint64_t finished;
};

struct ata_drive ata;
struct ata_options ata_options;
struct ata_stats ata_stats;
struct ata_result ata_last;
volatile uint64_t ata_done, ata_events, ata_done_tsc;

static struct request req;
static struct stream stream;
static uint64_t prd_base = UINT64_MAX, prd_bytes;      /* what the PRD table describes */
static int prd_loaded;                                  /* BM_PRD holds ATA_PRD_TABLE */
static uint8_t bm_command;                              /* what BM_COMMAND holds */

static inline void insl_sector(uint16_t port, void *buf)
{
    uint64_t n = DWORDS_PER_SECTOR;
    __asm__ volatile("rep insl" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}

static inline void outsl_sector(uint16_t port, const void *buf)
{
    uint64_t n = DWORDS_PER_SECTOR;
    __asm__ volatile("rep outsl" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

static uint8_t alt_status(void) { return inb(ata.ctl); }

/* Alternate Status until none of `bits` is set; returns the last value, or 0xFF when
 * the time ran out (which has BSY set). */
static uint8_t wait_clear(uint8_t bits, uint64_t ms)
{
    uint64_t deadline = rdtsc() + tsc_us(ms * 1000);
    uint8_t s;
    while ((s = alt_status()) & bits)
        if (rdtsc() > deadline)
            return 0xFF;
    return s;
}

const char *ata_strerror(int err)
{
    switch (err) {
    case ATA_OK: return "ok";
    case ATA_E_DEVICE: return "device-error";
    case ATA_E_BUS_MASTER: return "bus-master-error";
    case ATA_E_TIMEOUT: return "timeout";
    case ATA_E_ARG: return "bad-request";
    case ATA_E_NO_DEVICE: return "no-device";
    case ATA_E_DMA_LEFT: return "dma-still-active";
    case ATA_E_PROTOCOL: return "protocol";
    default: return "unknown";
    }
}

/* --- the PRD table -------------------------------------------------------------------- */

static int build_prd(uint64_t phys, uint64_t bytes)
{
    if (phys == prd_base && bytes == prd_bytes)
        return ATA_OK;                          /* a stream reuses its table */
    uint32_t *t = (uint32_t *)(uintptr_t)ATA_PRD_TABLE;
    uint64_t p = phys, left = bytes;
    unsigned n = 0;
    prd_base = UINT64_MAX;
    while (left) {
        uint64_t room = PRD_REGION_MAX - (p & (PRD_REGION_MAX - 1));
        uint64_t len = left < room ? left : room;
        if (n == ATA_PRD_ENTRIES_MAX || p + len > (1ULL << 32))
            return ATA_E_ARG;
        t[2 * n] = (uint32_t)p;
        t[2 * n + 1] = (uint32_t)(len & 0xFFFF);        /* 0: 64 KiB */
        p += len;
        left -= len;
        n++;
    }
    if (!n)
        return ATA_E_ARG;
    t[2 * n - 1] |= PRD_EOT;
    prd_base = phys;
    prd_bytes = bytes;
    return ATA_OK;
}

/* --- commands ------------------------------------------------------------------------- */

static int prepare(struct request *r, int write, int dma, uint64_t lba, uint32_t count,
                   void *buf)
{
    *r = (struct request){ 0 };
    r->kind = KIND_RW;
    r->write = write;
    r->dma = dma;
    r->lba = lba;
    r->count = count;
    if (!count || count > ATA_MAX_SECTORS48 || lba + count > ata.sectors)
        return ATA_E_ARG;
    r->ext = ata_options.force_lba48 || count > ATA_MAX_SECTORS28 ||
             lba + count >= ATA_LBA28_LIMIT;
    if (r->ext && !ata.lba48)
        return ATA_E_ARG;
    if (dma) {
        if (!ata.dma)
            return ATA_E_ARG;
        int e = build_prd((uintptr_t)buf, (uint64_t)count * ATA_SECTOR_SIZE);
        if (e)
            return e;
        r->opcode = r->ext ? (write ? ATA_CMD_WRITE_DMA_EXT : ATA_CMD_READ_DMA_EXT)
                           : (write ? ATA_CMD_WRITE_DMA : ATA_CMD_READ_DMA);
    } else {
        r->opcode = r->ext ? (write ? ATA_CMD_WRITE_PIO_EXT : ATA_CMD_READ_PIO_EXT)
                           : (write ? ATA_CMD_WRITE_PIO : ATA_CMD_READ_PIO);
        r->pio = buf;
        r->pio_left = count;
    }
    return ATA_OK;
}

static void load_task_file(const struct request *r)
{
    uint16_t c = ata.cmd;
    if (r->ext) {       /* the 48-bit registers are two deep: "previous" (high) first */
        outb(c + ATA_REG_COUNT, (uint8_t)(r->count >> 8));
        outb(c + ATA_REG_LBA_LOW, (uint8_t)(r->lba >> 24));
        outb(c + ATA_REG_LBA_MID, (uint8_t)(r->lba >> 32));
        outb(c + ATA_REG_LBA_HIGH, (uint8_t)(r->lba >> 40));
    }
    outb(c + ATA_REG_COUNT, (uint8_t)r->count);         /* 256 (65536) is 0 */
    outb(c + ATA_REG_LBA_LOW, (uint8_t)r->lba);
    outb(c + ATA_REG_LBA_MID, (uint8_t)(r->lba >> 8));
    outb(c + ATA_REG_LBA_HIGH, (uint8_t)(r->lba >> 16));
    outb(c + ATA_REG_DEVICE, r->ext ? ATA_DEV_LBA
                                    : (uint8_t)(ATA_DEV_LBA28 | ((r->lba >> 24) & 0x0F)));
}

static void fail_now(const struct request *r, int err)
{
    ata_last = (struct ata_result){ err, r->opcode, 0, 0, 0, r->lba, r->count };
    ata_stats.errors++;
}

/* Put *r on the wire. The drive must be idle (BSY and DRQ clear): `status` is a Status
 * value just read, or 0xFF to have Alternate Status read here. */
static int issue(const struct request *r, uint8_t status)
{
    if (status & (ATA_ST_BSY | ATA_ST_DRQ) && alt_status() & (ATA_ST_BSY | ATA_ST_DRQ) &&
        wait_clear(ATA_ST_BSY | ATA_ST_DRQ, ATA_POLL_TIMEOUT_MS) == 0xFF) {
        fail_now(r, ATA_E_TIMEOUT);
        return ATA_E_TIMEOUT;
    }
    uint8_t direction = r->write ? 0 : BM_CMD_TO_MEMORY;
    if (r->dma) {
        if (!prd_loaded) {
            outl(ata.bm + BM_PRD, (uint32_t)ATA_PRD_TABLE);
            prd_loaded = 1;
        }
        if (bm_command != direction)                    /* direction while stopped */
            outb(ata.bm + BM_COMMAND, bm_command = direction);
    }
    if (r->kind == KIND_RW)
        load_task_file(r);
    req = *r;
    req.active = 1;
    outb(ata.cmd + ATA_REG_COMMAND, r->opcode);
    ata_stats.commands++;
    if (r->kind == KIND_RW) {
        ata_stats.dma_commands += r->dma;
        ata_stats.pio_commands += !r->dma;
        ata_stats.lba48_commands += r->ext;
    }
    if (r->dma) {
        outb(ata.bm + BM_COMMAND, bm_command = direction | BM_CMD_START);
    } else if (r->write && r->kind == KIND_RW) {
        /* PIO data-out: DRQ for the first sector comes without an interrupt. On an error
         * (a read-only medium aborts) the drive interrupts instead: service() sees ERR. */
        (void)alt_status();                             /* the 400 ns before BSY is valid */
        uint8_t s = wait_clear(ATA_ST_BSY, ATA_POLL_TIMEOUT_MS);
        if (s != 0xFF && (s & (ATA_ST_DRQ | ATA_ST_ERR)) == ATA_ST_DRQ) {
            outsl_sector(ata.cmd + ATA_REG_DATA, req.pio);
            req.pio += ATA_SECTOR_SIZE;
            req.pio_left--;
        }
    }
    return ATA_OK;
}

static int stream_issue_next(uint8_t status);

static void complete(int err, uint8_t status, uint8_t bm)
{
    struct request *r = &req;
    r->active = 0;
    uint8_t error = status & ATA_ST_ERR ? inb(ata.cmd + ATA_REG_ERROR) : 0;
    ata_last = (struct ata_result){ err, r->opcode, status, error, bm, r->lba, r->count };
    if (err)
        ata_stats.errors++;
    else if (r->kind == KIND_RW)
        ata_stats.bytes += (uint64_t)r->count * ATA_SECTOR_SIZE;
    ata_done_tsc = rdtsc();
    ata_done++;
    if (ata_options.trace)
        kprintf("ata: cmd=0x%02x lba=%lu count=%u %s status=0x%02x error=0x%02x bm=0x%02x\n",
                r->opcode, r->lba, r->count, ata_strerror(err), status, error, bm);
    if (!stream.active)
        return;
    if (err || !stream.left) {
        stream.result = err;
        stream.active = 0;
        stream.finished = 1;
    } else {
        stream_issue_next(status);
    }
}

/* The interrupt (or, polling, the drive no longer BSY): advance the active command. */
static void service(int polled)
{
    struct request *r = &req;
    ata_events++;
    uint8_t bm = inb(ata.bm + BM_STATUS);
    if (!r->active) {
        (void)inb(ata.cmd + ATA_REG_STATUS);
        if (bm & (BM_ST_INTERRUPT | BM_ST_ERROR))
            outb(ata.bm + BM_STATUS, bm & (BM_ST_DRIVE_DMA | BM_ST_INTERRUPT | BM_ST_ERROR));
        ata_stats.spurious++;
        return;
    }
    if (r->dma && !polled && !(bm & BM_ST_INTERRUPT)) {
        /* SFF-8038i: the Interrupt bit says the drive interrupted. A drive still BSY
         * means this interrupt is not the command's end. */
        if (alt_status() & ATA_ST_BSY) {
            ata_stats.spurious++;
            return;
        }
        ata_stats.bm_no_interrupt++;
    }
    if (r->dma)                                         /* stop the engine */
        outb(ata.bm + BM_COMMAND, bm_command &= (uint8_t)~BM_CMD_START);
    uint8_t st = inb(ata.cmd + ATA_REG_STATUS);         /* acknowledges INTRQ */
    if (bm & (BM_ST_INTERRUPT | BM_ST_ERROR))
        outb(ata.bm + BM_STATUS, bm & (BM_ST_DRIVE_DMA | BM_ST_INTERRUPT | BM_ST_ERROR));
    if (st & ATA_ST_BSY) {
        ata_stats.spurious++;                           /* PIO: not ready yet */
        return;
    }
    if (st & (ATA_ST_ERR | ATA_ST_DF)) {
        complete(ATA_E_DEVICE, st, bm);
        return;
    }
    if (r->dma) {
        complete(bm & BM_ST_ERROR ? ATA_E_BUS_MASTER : bm & BM_ST_ACTIVE ? ATA_E_DMA_LEFT
                                                                         : ATA_OK, st, bm);
        return;
    }
    if (r->pio_left) {
        if (!(st & ATA_ST_DRQ)) {
            complete(ATA_E_PROTOCOL, st, bm);       /* data left but no DRQ */
            return;
        }
        if (r->write) {
            outsl_sector(ata.cmd + ATA_REG_DATA, r->pio);
        } else {
            insl_sector(ata.cmd + ATA_REG_DATA, r->pio);
        }
        r->pio += ATA_SECTOR_SIZE;
        r->pio_left--;
        if (r->write || r->pio_left)
            return;                     /* PIO in: no interrupt after the last sector */
        complete(ATA_OK, st, bm);
        return;
    }
    complete(st & ATA_ST_DRQ ? ATA_E_PROTOCOL : ATA_OK, st, bm);
}

static void ata_irq(unsigned irq)
{
    (void)irq;
    ata_stats.irqs++;
    service(0);
}

/* --- waiting -------------------------------------------------------------------------- */

struct wait_job {
    const volatile uint64_t *counter;
    uint64_t target, idle_cycles;
};

/* CPL 3, IF=1: until *counter >= target; 1 if nothing happened for idle_cycles. */
static uint64_t wait_user(void *arg)
{
    const struct wait_job *job = arg;
    uint64_t seen = ata_events, last = rdtsc();
    while (*job->counter < job->target) {
        uint64_t now = rdtsc();
        if (ata_events != seen) {
            seen = ata_events;
            last = now;
        } else if (now - last > job->idle_cycles) {
            return 1;
        }
        __asm__ volatile("pause");
    }
    return 0;
}

/* Polled, the command has moved on: PIO, the drive no longer BSY (DRQ: data ready);
 * DMA, neither BSY nor DRQ (a drive may show DRQ alone during the transfer) and the
 * engine no longer Active, unless the drive reports an error. */
static int polled_ready(uint8_t s)
{
    if (!req.dma)
        return !(s & ATA_ST_BSY);
    if (s & (ATA_ST_BSY | ATA_ST_DRQ))
        return 0;
    return s & (ATA_ST_ERR | ATA_ST_DF) || !(inb(ata.bm + BM_STATUS) & BM_ST_ACTIVE);
}

/* One polled step: wait (bounded) until the command can move on, then service(). */
static int poll_step(void)
{
    uint64_t deadline = rdtsc() + tsc_us(ATA_POLL_TIMEOUT_MS * 1000);
    (void)alt_status();                                 /* the 400 ns after a command */
    uint8_t s;
    while (!polled_ready(s = alt_status()))
        if (rdtsc() > deadline) {
            complete(ATA_E_TIMEOUT, s, 0);
            return ATA_E_TIMEOUT;
        }
    service(1);
    return ATA_OK;
}

static int wait_for(const volatile uint64_t *counter, uint64_t target)
{
    while (*counter < target) {
        if (!ata.polling) {
            uint64_t ms = ata_options.irq_timeout_ms ? ata_options.irq_timeout_ms
                                                     : ATA_IRQ_TIMEOUT_MS;
            struct wait_job job = { counter, target, tsc_us(ms * 1000) };
            uint64_t saved = user_rflags;
            user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
            uint64_t idle = run_user(wait_user, &job);
            user_rflags = saved;
            if (!idle)
                break;
            /* No interrupt and no progress: finish by polling from now on (nIEN set). */
            ata_stats.no_irq++;
            ata.polling = 1;
            outb(ata.ctl, ATA_CTL_OBS | ATA_CTL_NIEN);
            kprintf("ata: no interrupt for %lu ms (command 0x%x lba %lu): polling\n", ms,
                    req.opcode, req.lba);
        }
        if (*counter >= target)
            break;
        if (!req.active)
            return ATA_E_TIMEOUT;       /* nothing in flight could get us there */
        int e = poll_step();
        if (e)
            return e;
    }
    return ATA_OK;
}

int ata_wait_done(uint64_t target) { return wait_for(&ata_done, target); }

static int run_one(const struct request *r)
{
    uint64_t target = ata_done + 1;
    int e = issue(r, 0xFF);
    if (e)
        return e;
    e = wait_for(&ata_done, target);
    return e ? e : ata_last.err;
}

static int rw(int write, uint64_t lba, uint32_t count, void *buf, int dma)
{
    struct request r;
    int e = prepare(&r, write, dma, lba, count, buf);
    if (e) {
        fail_now(&r, e);
        return e;
    }
    return run_one(&r);
}

int ata_read(uint64_t lba, uint32_t count, void *buf, int dma)
{
    return rw(0, lba, count, buf, dma);
}

int ata_write(uint64_t lba, uint32_t count, const void *buf, int dma)
{
    return rw(1, lba, count, (void *)(uintptr_t)buf, dma);
}

int ata_flush(int ext)
{
    struct request r = { 0 };
    r.kind = KIND_NODATA;
    r.opcode = ext ? ATA_CMD_FLUSH_EXT : ATA_CMD_FLUSH;
    if (ext && !ata.lba48) {
        fail_now(&r, ATA_E_ARG);
        return ATA_E_ARG;
    }
    return run_one(&r);
}

/* --- streams -------------------------------------------------------------------------- */

static int stream_issue_next(uint8_t status)
{
    struct request r;
    uint64_t lba = stream.first + stream.offset;
    stream.offset = (stream.offset + stream.count) % stream.wrap;
    stream.left--;
    int e = prepare(&r, stream.write, stream.dma, lba, stream.count, stream.buf);
    if (e)
        fail_now(&r, e);
    else
        e = issue(&r, status);
    if (e) {
        stream.result = e;
        stream.active = 0;
        stream.finished = 1;
    }
    return e;
}

int ata_stream_start(int write, int dma, uint64_t first, uint32_t count, uint64_t commands,
                     uint64_t wrap, void *buf)
{
    if (!count || !commands || wrap < count || wrap % count)
        return ATA_E_ARG;
    stream = (struct stream){ 1, write, dma, ATA_OK, first, wrap, 0, commands, count,
                              buf, 0 };
    return stream_issue_next(0xFF);
}

int ata_stream_busy(void) { return !stream.finished; }

int ata_stream_wait(void)
{
    int e = wait_for(&stream.finished, 1);
    if (e && stream.active) {
        stream.active = 0;
        stream.result = e;
        stream.finished = 1;
    }
    return stream.result;
}

int ata_stream_result(void) { return stream.result; }

/* --- setup ---------------------------------------------------------------------------- */

static void ata_string(char *out, unsigned word, unsigned words)
{
    unsigned n = 0;
    for (unsigned i = 0; i < words; i++) {
        out[n++] = (char)(ata.identify[word + i] >> 8);        /* first character high */
        out[n++] = (char)(ata.identify[word + i] & 0xFF);
    }
    while (n && (out[n - 1] == ' ' || out[n - 1] == '\0'))
        n--;
    out[n] = '\0';
}

static void parse_identify(void)
{
    const uint16_t *w = ata.identify;
    ata.sectors28 = w[ID_LBA28_SECTORS] | (uint32_t)w[ID_LBA28_SECTORS + 1] << 16;
    ata.lba48 = (w[ID_COMMAND_SET_2] & ID_WORD_VALID_MASK) == ID_WORD_VALID &&
                (w[ID_COMMAND_SET_2] & ID_CS2_LBA48);
    ata.flush_ext = ata.lba48 && (w[ID_COMMAND_SET_2] & ID_CS2_FLUSH_EXT);
    ata.sectors48 = 0;
    for (int i = 3; i >= 0; i--)
        ata.sectors48 = ata.sectors48 << 16 | w[ID_LBA48_SECTORS + i];
    ata.sectors = ata.lba48 && ata.sectors48 ? ata.sectors48 : ata.sectors28;
    ata.dma = !!(w[ID_CAPABILITIES] & ID_CAP_DMA);
    ata.mwdma = w[ID_MWDMA];
    ata.udma = w[ID_FIELD_VALIDITY] & ID_VALID_88 ? w[ID_UDMA] : 0;
    ata_string(ata.model, ID_MODEL, 20);
    ata_string(ata.serial, ID_SERIAL, 10);
    ata.integrity = 0;
    if ((w[ID_INTEGRITY] & 0xFF) == ID_SIGNATURE) {
        const uint8_t *b = (const uint8_t *)w;
        uint8_t sum = 0;
        for (unsigned i = 0; i < ATA_SECTOR_SIZE; i++)
            sum = (uint8_t)(sum + b[i]);
        ata.integrity = sum ? -1 : 1;
    }
}

static int setup_pci(const char **why)
{
    struct pci_function f;
    if (pci_find_class(PCI_CLASS_STORAGE, PCI_SUBCLASS_IDE, &f)) {
        *why = "no-ide-controller";
        return ATA_E_NO_DEVICE;
    }
    ata.pci_bus = f.bus;
    ata.pci_dev = f.dev;
    ata.pci_fn = f.fn;
    ata.vendor = f.vendor;
    ata.device = f.device;
    ata.prog_if = f.prog_if;
    if (f.prog_if & PROG_IF_PRIMARY_NATIVE) {
        *why = "primary-channel-in-native-mode";
        return ATA_E_NO_DEVICE;
    }
    uint32_t bar4 = pci_read32(&f, PCI_BAR4);
    if (!(bar4 & PCI_BAR_IO)) {
        *why = "bar4-not-io";
        return ATA_E_NO_DEVICE;
    }
    if (!(bar4 & PCI_BAR_IO_MASK)) {                    /* nobody placed it: we do */
        pci_write32(&f, PCI_BAR4, BM_DEFAULT_PORT);
        bar4 = pci_read32(&f, PCI_BAR4);
        ata.bar4_assigned = 1;
    }
    ata.bm = (uint16_t)(bar4 & PCI_BAR_IO_MASK);
    uint16_t want = PCI_COMMAND_IO | PCI_COMMAND_MASTER;
    ata.pci_command_before = ata.pci_command = pci_read16(&f, PCI_COMMAND);
    if ((ata.pci_command & want) != want) {             /* as pci_enable_device + set_master */
        pci_write16(&f, PCI_COMMAND, ata.pci_command | want);
        ata.pci_command = pci_read16(&f, PCI_COMMAND);
    }
    if ((ata.pci_command & want) != want) {
        *why = "pci-command-stuck";
        return ATA_E_NO_DEVICE;
    }
    if (f.vendor == INTEL_VENDOR) {
        /* PIIX: a channel's legacy ports decode only with IDETIM.IDE set (firmware's job). */
        uint16_t idetim = pci_read16(&f, PIIX_IDETIM);
        if (!(idetim & PIIX_IDETIM_IDE)) {
            pci_write16(&f, PIIX_IDETIM, idetim | PIIX_IDETIM_IDE);
            ata.idetim_enabled = 1;
        }
    }
    return ATA_OK;
}

int ata_init(const char **why)
{
    *why = "none";
    ata = (struct ata_drive){ 0 };
    ata_stats = (struct ata_stats){ 0 };
    prd_base = UINT64_MAX;
    prd_loaded = 0;
    int e = setup_pci(why);
    if (e)
        return e;
    ata.cmd = ATA_PRIMARY_CMD;
    ata.ctl = ATA_PRIMARY_CTL;

    outb(ata.cmd + ATA_REG_DEVICE, ATA_DEV_LBA28);      /* master */
    outb(ata.ctl, ATA_CTL_OBS);                         /* nIEN clear: interrupts on */
    uint8_t s = wait_clear(ATA_ST_BSY, ATA_POLL_TIMEOUT_MS);
    if (s == 0xFF || s == 0x7F || !(s & ATA_ST_DRDY)) {
        *why = s == 0xFF ? "drive-busy" : "no-drive";
        return ATA_E_NO_DEVICE;
    }
    (void)inb(ata.cmd + ATA_REG_STATUS);                /* drop a pending interrupt */
    uint8_t bm = inb(ata.bm + BM_STATUS);
    outb(ata.bm + BM_COMMAND, bm_command = 0);
    outb(ata.bm + BM_STATUS, bm & (BM_ST_DRIVE_DMA | BM_ST_INTERRUPT | BM_ST_ERROR));
    if (ata_options.irq_masked)
        irq_set_handler(ATA_IRQ, ata_irq, IRQ_FLOW_ACK);
    else
        irq_attach(ATA_IRQ, ata_irq, IRQ_FLOW_ACK);

    struct request r = { 0 };
    r.kind = KIND_IDENTIFY;
    r.opcode = ATA_CMD_IDENTIFY;
    r.pio = (uint8_t *)ata.identify;
    r.pio_left = 1;
    r.count = 1;
    e = run_one(&r);
    if (e) {
        *why = "identify";
        return e;
    }
    parse_identify();
    if (!ata.sectors) {
        *why = "no-capacity";
        return ATA_E_NO_DEVICE;
    }
    return ATA_OK;
}
