/*
 * ATA driver for the master drive on the primary channel of a PCI IDE controller in
 * compatibility mode (PIIX3 8086:7010 on QEMU and pyhvm), with SFF-8038i bus-master DMA.
 *
 * Ports: command block 0x1F0-0x1F7, control block 0x3F6, bus-master block at BAR4 (the
 * primary channel's eight bytes). ATA-6 (T13 1410D) protocols: PIO data-in (an interrupt
 * before each sector), PIO data-out (DRQ for the first sector without an interrupt, an
 * interrupt after each), DMA (one interrupt at the end), non-data (FLUSH CACHE).
 *
 * Completion is interrupt driven: IRQ 14 through the slave 8259 (pic.c, IRQ_FLOW_ACK; the
 * cascade IRQ 2 is open on the master). The handler reads the bus-master status, stops the
 * engine, reads the ATA Status register (which acknowledges INTRQ), writes the bus-master
 * Interrupt/Error bits back (write 1 to clear), moves the next PIO sector or completes the
 * command, and may issue the next command of a stream (ata_stream_start) at once, so that
 * I/O goes on while CPL 3 computes. Waiting happens at CPL 3 with RFLAGS.IF=1 (native
 * here); the kit never enables interrupts at CPL 0.
 *
 * If no interrupt (and no progress) comes within ATA_IRQ_TIMEOUT_MS (or
 * ata_options.irq_timeout_ms), the driver counts it in ata_stats.no_irq, sets nIEN and
 * finishes that command and all later ones by polling at CPL 0 (bounded); the scenarios
 * treat no_irq > 0 as a failure.
 *
 * Addressing: LBA28 unless the command needs LBA48 (end of range at or past 2^28, or more
 * than 256 sectors) or ata_options.force_lba48 is set (the drive must have the 48-bit
 * feature set).
 *
 * DMA buffers are physical addresses (the kit identity-maps the first 4 GiB); the PRD table
 * lives at ATA_PRD_TABLE (below 4 GiB, in one 64 KiB page), one entry per 64 KiB piece
 * that does not cross a 64 KiB boundary: a 32 MiB buffer aligned to 64 KiB takes 512.
 * Everything here runs at CPL 0, where this host emulates every instruction (~0.5 us):
 * the paths touch few registers; data is generated and checked at CPL 3 by the scenarios.
 */
#ifndef GUEST_ATA_H
#define GUEST_ATA_H

#include <stdint.h>

#define ATA_SECTOR_SIZE     512
#define ATA_MAX_SECTORS28   256         /* count register 0 means 256 */
#define ATA_MAX_SECTORS48   65536       /* count registers 0/0 mean 65536 */
#define ATA_LBA28_LIMIT     (1ULL << 28)
#define ATA_IRQ             14

/* Legacy primary channel (compatibility mode). */
#define ATA_PRIMARY_CMD     0x1F0
#define ATA_PRIMARY_CTL     0x3F6

/* Command block registers (offsets from ATA_PRIMARY_CMD). */
#define ATA_REG_DATA        0
#define ATA_REG_ERROR       1           /* read */
#define ATA_REG_FEATURES    1           /* write */
#define ATA_REG_COUNT       2
#define ATA_REG_LBA_LOW     3
#define ATA_REG_LBA_MID     4
#define ATA_REG_LBA_HIGH    5
#define ATA_REG_DEVICE      6
#define ATA_REG_STATUS      7           /* read: acknowledges the interrupt */
#define ATA_REG_COMMAND     7           /* write */

#define ATA_ST_ERR          0x01
#define ATA_ST_DRQ          0x08
#define ATA_ST_DF           0x20
#define ATA_ST_DRDY         0x40
#define ATA_ST_BSY          0x80

#define ATA_ERR_ABRT        0x04
#define ATA_ERR_IDNF        0x10
#define ATA_ERR_UNC         0x40

#define ATA_DEV_LBA         0x40        /* with bits 7 and 5 (obsolete, set) for LBA28 */
#define ATA_DEV_LBA28       0xE0
#define ATA_CTL_NIEN        0x02
#define ATA_CTL_OBS         0x08        /* obsolete bit 3, written as one (as Linux does) */

#define ATA_CMD_READ_PIO        0x20
#define ATA_CMD_READ_PIO_EXT    0x24
#define ATA_CMD_READ_DMA_EXT    0x25
#define ATA_CMD_WRITE_PIO       0x30
#define ATA_CMD_WRITE_PIO_EXT   0x34
#define ATA_CMD_WRITE_DMA_EXT   0x35
#define ATA_CMD_READ_DMA        0xC8
#define ATA_CMD_WRITE_DMA       0xCA
#define ATA_CMD_FLUSH           0xE7
#define ATA_CMD_FLUSH_EXT       0xEA
#define ATA_CMD_IDENTIFY        0xEC

/* Bus-master registers (SFF-8038i), offsets from BAR4 for the primary channel. */
#define BM_COMMAND          0
#define BM_STATUS           2
#define BM_PRD              4           /* dword */
#define BM_CMD_START        0x01
#define BM_CMD_TO_MEMORY    0x08        /* a read from the drive: the bus master writes RAM */
#define BM_ST_ACTIVE        0x01
#define BM_ST_ERROR         0x02
#define BM_ST_INTERRUPT     0x04
#define BM_ST_DRIVE_DMA     0x60        /* drive 0/1 DMA capable: read/write, kept */

#define PRD_EOT             0x80000000u
#define PRD_REGION_MAX      0x10000u    /* a byte count of 0 means 64 KiB */
#define ATA_PRD_ENTRIES_MAX 1024

/* Physical memory the driver and the disk scenarios use (identity-mapped). */
#define ATA_DMA_AREA        0x1000000ULL                /* 16 MiB */
#define ATA_PRD_TABLE       ATA_DMA_AREA                /* 8 KiB, in one 64 KiB page */
#define ATA_DATA_BUFFER     (ATA_DMA_AREA + 0x10000)    /* 64 KiB aligned */
#define ATA_DATA_BUFFER_MAX (32ULL << 20)               /* the largest command */

#define ATA_IRQ_TIMEOUT_MS  5000        /* no interrupt and no progress for this long */
#define ATA_POLL_TIMEOUT_MS 10000       /* polling one step of a command, at CPL 0 */

/* Driver results. */
#define ATA_OK          0
#define ATA_E_DEVICE    1               /* Status ERR or DF: see ata_last.error */
#define ATA_E_BUS_MASTER 2              /* bus-master Error bit */
#define ATA_E_TIMEOUT   3               /* not complete even by polling */
#define ATA_E_ARG       4               /* count 0, too many sectors, no LBA48, no DMA ... */
#define ATA_E_NO_DEVICE 5
#define ATA_E_DMA_LEFT  6               /* the bus master still Active after completion */
#define ATA_E_PROTOCOL  7               /* DRQ where none belongs, or none where data is due */

struct ata_drive {
    /* PCI */
    uint8_t pci_bus, pci_dev, pci_fn, prog_if;
    uint16_t vendor, device;
    uint16_t pci_command_before, pci_command;
    int bar4_assigned;                  /* BAR4 was 0 and the driver placed it */
    int idetim_enabled;                 /* the driver set the PIIX IDETIM decode bit */
    uint16_t cmd, ctl, bm;              /* port bases */
    /* IDENTIFY DEVICE */
    uint16_t identify[256];
    uint64_t sectors28, sectors48, sectors;
    int lba48, dma, flush_ext;
    uint16_t mwdma, udma;               /* words 63 and 88 */
    char model[41], serial[21];
    int integrity;                      /* word 255: 1 valid, 0 absent, -1 bad checksum */
    int polling;                        /* fell back to polling (nIEN set) */
};

/* Set before ata_init(); it keeps them. */
struct ata_options {
    int force_lba48;                    /* 48-bit commands for everything */
    int trace;                          /* a line per completed command */
    int irq_masked;                     /* test hook: leave IRQ 14 masked at the PIC */
    uint64_t irq_timeout_ms;            /* 0: ATA_IRQ_TIMEOUT_MS */
};

struct ata_stats {
    uint64_t commands, pio_commands, dma_commands, lba48_commands;
    uint64_t irqs;                      /* IRQ 14 handler runs */
    uint64_t spurious;                  /* interrupts with no command or a busy drive */
    uint64_t no_irq;                    /* commands finished by polling after a timeout */
    uint64_t bm_no_interrupt;           /* DMA done by IRQ without the bus-master bit */
    uint64_t errors;                    /* commands that ended with an error */
    uint64_t bytes;                     /* moved by successful read/write commands */
};

/* What the last completed command left. */
struct ata_result {
    int err;                            /* ATA_OK or ATA_E_* */
    uint8_t opcode, status, error, bm_status;
    uint64_t lba;
    uint32_t count;
};

extern struct ata_drive ata;
extern struct ata_options ata_options;
extern struct ata_stats ata_stats;
extern struct ata_result ata_last;
extern volatile uint64_t ata_done;      /* completed commands (handler or poll path) */
extern volatile uint64_t ata_events;    /* handler runs and poll steps: progress */
extern volatile uint64_t ata_done_tsc;  /* TSC at the latest completion */

/*
 * Find the IDE controller (PCI class 01h/01h), enable its I/O decode and bus mastering,
 * set up the primary master (nIEN clear), attach IRQ 14 (pic_init() must have run; with
 * ata_options.irq_masked the handler is set but the IRQ stays masked) and run IDENTIFY
 * DEVICE. Returns ATA_OK or an ATA_E_*; *why names the step that failed.
 */
int ata_init(const char **why);

const char *ata_strerror(int err);

/* One command, waited for (at CPL 3 with IF=1). buf: physical address for DMA, any
 * kernel address for PIO. Returns ATA_OK or ATA_E_*; details in ata_last. */
int ata_read(uint64_t lba, uint32_t count, void *buf, int dma);
int ata_write(uint64_t lba, uint32_t count, const void *buf, int dma);
int ata_flush(int ext);

/*
 * A stream: `commands` commands of `count` sectors each, the i-th at
 * first + (i * count) % wrap (wrap: a multiple of count), all on one buffer (a DMA stream
 * builds its PRD table once). The first is issued here, each next one from the interrupt
 * handler as the previous one completes; returns at once. ata_stream_wait() waits at CPL 3
 * for the end; ata_stream_result() is ATA_OK or the first error (which stops the stream).
 */
int ata_stream_start(int write, int dma, uint64_t first, uint32_t count, uint64_t commands,
                     uint64_t wrap, void *buf);
int ata_stream_busy(void);
int ata_stream_wait(void);
int ata_stream_result(void);

/*
 * Wait at CPL 3 with IF=1 until ata_done >= target; returns ATA_OK, or the error of the
 * poll fallback when the interrupts stopped. Exposed for callers that do their own
 * CPL 3 work first.
 */
int ata_wait_done(uint64_t target);

#endif
