/*
 * disk-verify: write a deterministic pattern over the first mb MiB of the primary master,
 * FLUSH CACHE, read it all back and compare.
 *   disk-verify [mb=4] [mode=both|pio|dma] [seed=1] [lba48=0] [expect_ro=0]
 * Pattern and checksum: disk.h. Write commands take sizes from one list (1 to 256 sectors),
 * reads from another, so their boundaries differ; with mode=both commands alternate
 * between DMA and PIO. When DMA is allowed, the second write and the third read are single
 * DMA commands of more than 256 sectors (READ/WRITE DMA EXT). lba48=1 makes every command
 * a 48-bit one. The read buffer is poisoned before each read, so a transfer that moves
 * nothing is caught.
 * RESULT disk-verify ok= mb= sectors= errors= checksum=0x.. expected=0x.. mode= seed=
 *   lba48= bad_sectors= first_bad_lba= write_errors= read_errors= flush_errors= ...
 * checksum is over the data read back, expected over the data written: equal when all is
 * well, and the same under every VMM for one mb and seed.
 *
 * expect_ro=1 (a read-only drive): instead of the write pass, one PIO and/or one DMA
 * write (as mode allows) over the first sectors must each fail with ERR/ABRT; then the
 * read pass checks the pattern the host put there. Adds ro=1 write_attempts= rejected=.
 */
#include "ata.h"
#include "cmdline.h"
#include "disk.h"
#include "kit.h"
#include "scenario.h"

#define DEFAULT_MB      4
#define MAX_MB          1024
#define BIG_WRITE       1000            /* sectors: one DMA EXT command > 256 */
#define BIG_READ        1200
#define BUFFER_SECTORS  BIG_READ
#define RO_DMA_LBA      8
#define RO_DMA_COUNT    8
#define MAX_ERROR_LINES 8

static const uint16_t write_sizes[] = { 1, 8, 255, 3, 64, 256, 16, 128, 2, 200, 32, 97, 7, 180 };
static const uint16_t read_sizes[] = { 256, 5, 100, 1, 33, 250, 64, 9, 128, 77, 2, 211 };

static unsigned error_lines;

static void report_error(const char *what, uint64_t lba, uint32_t count, int dma, int e)
{
    if (error_lines++ >= MAX_ERROR_LINES)
        return;
    kprintf("disk-verify: %s lba=%lu count=%u %s failed: %s status=0x%02x error=0x%02x "
            "bm=0x%02x\n", what, lba, count, dma ? "dma" : "pio", ata_strerror(e),
            ata_last.status, ata_last.error, ata_last.bm_status);
}

/* The k-th command of a pass: its size and whether it uses DMA. */
static uint32_t pick(const uint16_t *sizes, unsigned n, unsigned k, unsigned big_at,
                     uint32_t big, int mode, uint64_t left, int *dma)
{
    if (mode & DISK_MODE_DMA && k == big_at && left > ATA_MAX_SECTORS28) {
        *dma = 1;
        return left < big ? (uint32_t)left : big;
    }
    *dma = mode == DISK_MODE_BOTH ? !(k & 1) : mode == DISK_MODE_DMA;
    uint32_t count = sizes[k % n];
    return left < count ? (uint32_t)left : count;
}

int scn_disk_verify(const struct multiboot_info *mbi)
{
    uint64_t mb, seed, expect_ro;
    if (arg_u64("disk-verify", "mb", DEFAULT_MB, &mb) ||
        arg_u64("disk-verify", "seed", 1, &seed) ||
        arg_u64("disk-verify", "expect_ro", 0, &expect_ro))
        return STATUS_USAGE;
    int mode = disk_arg_mode("disk-verify", DISK_MODE_BOTH);
    if (mode < 0)
        return STATUS_USAGE;
    if (mb == 0 || mb > MAX_MB) {
        kprintf("RESULT error bad-arg scenario=disk-verify key=mb value=%lu\n", mb);
        return STATUS_USAGE;
    }
    int st = disk_setup("disk-verify", mbi, (uint64_t)BUFFER_SECTORS * ATA_SECTOR_SIZE);
    if (st != STATUS_OK)
        return st;
    uint64_t total = mb * 2048;
    if (total > ata.sectors) {
        kprintf("RESULT disk-verify ok=0 error=disk-too-small mb=%lu sectors=%lu\n", mb,
                ata.sectors);
        return STATUS_FAIL;
    }
    uint8_t *buf = (uint8_t *)(uintptr_t)ATA_DATA_BUFFER;
    uint64_t expected = DISK_FNV_OFFSET, checksum = DISK_FNV_OFFSET;
    uint64_t write_errors = 0, read_errors = 0, flush_errors = 0, bad = 0;
    uint64_t first_bad = UINT64_MAX, attempts = 0, rejected = 0;
    int dma, e;

    if (expect_ro) {
        /* The host wrote the pattern; each write must be refused with ABRT. */
        for (uint64_t s = 0; s < total; s += BUFFER_SECTORS) {
            uint32_t n = total - s < BUFFER_SECTORS ? (uint32_t)(total - s) : BUFFER_SECTORS;
            disk_fill(buf, s, n, seed, &expected);  /* expected checksum only */
        }
        if (mode & DISK_MODE_PIO) {
            disk_fill(buf, 0, 1, ~seed, NULL);
            attempts++;
            e = ata_write(0, 1, buf, 0);
            if (e == ATA_E_DEVICE && ata_last.error & ATA_ERR_ABRT)
                rejected++;
            kprintf("disk-verify: read-only pio write: %s status=0x%02x error=0x%02x\n",
                    ata_strerror(e), ata_last.status, ata_last.error);
        }
        if (mode & DISK_MODE_DMA) {
            disk_fill(buf, RO_DMA_LBA, RO_DMA_COUNT, ~seed, NULL);
            attempts++;
            e = ata_write(RO_DMA_LBA, RO_DMA_COUNT, buf, 1);
            if (e == ATA_E_DEVICE && ata_last.error & ATA_ERR_ABRT)
                rejected++;
            kprintf("disk-verify: read-only dma write: %s status=0x%02x error=0x%02x "
                    "bm=0x%02x\n", ata_strerror(e), ata_last.status, ata_last.error,
                    ata_last.bm_status);
        }
    } else {
        unsigned k = 0;
        for (uint64_t lba = 0; lba < total; k++) {
            uint32_t n = pick(write_sizes, ARRAY_SIZE(write_sizes), k, 1, BIG_WRITE, mode,
                              total - lba, &dma);
            disk_fill(buf, lba, n, seed, &expected);
            e = ata_write(lba, n, buf, dma);
            if (e) {
                write_errors++;
                report_error("write", lba, n, dma, e);
            }
            lba += n;
        }
        e = ata_flush(ata.flush_ext);
        if (e) {
            flush_errors++;
            report_error("flush", 0, 0, 0, e);
        }
    }

    disk_poison(buf, (uint64_t)BUFFER_SECTORS * ATA_SECTOR_SIZE);
    unsigned k = 0;
    for (uint64_t lba = 0; lba < total; k++) {
        uint32_t n = pick(read_sizes, ARRAY_SIZE(read_sizes), k, 2, BIG_READ, mode,
                          total - lba, &dma);
        e = ata_read(lba, n, buf, dma);
        if (e) {
            read_errors++;
            report_error("read", lba, n, dma, e);
        }
        bad += disk_check(buf, lba, n, seed, &checksum, &first_bad);
        lba += n;
    }

    uint64_t errors = write_errors + read_errors + flush_errors + bad;
    int ok = errors == 0 && checksum == expected && !disk_irq_trouble() &&
             (!expect_ro || (attempts > 0 && rejected == attempts));
    kprintf("RESULT disk-verify ok=%d mb=%lu sectors=%lu errors=%lu checksum=0x%016lx "
            "expected=0x%016lx mode=%s seed=%lu lba48=%d bad_sectors=%lu first_bad_lba=%ld "
            "write_errors=%lu read_errors=%lu flush_errors=%lu", ok, mb, total, errors,
            checksum, expected, disk_mode_name(mode), seed, ata_options.force_lba48, bad,
            first_bad == UINT64_MAX ? -1L : (long)first_bad, write_errors, read_errors,
            flush_errors);
    if (expect_ro)
        kprintf(" ro=1 write_attempts=%lu rejected=%lu", attempts, rejected);
    disk_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
