/*
 * disk-seq: sequential transfers of one size, back to back, timed with the TSC.
 *   disk-seq [op=read|write] [size=64] [mb=16] [mode=dma|pio] [seed=1] [lba48=0]
 * size is KiB per command (1 to 32768: 65536 sectors, the largest LBA48 command, whose
 * PRD table has 512 entries of 64 KiB); the commands cover the first mb MiB
 * (mb*1024/size commands, the last partial one left out). Each next command is issued
 * from the IRQ 14 handler as the previous one completes, after one untimed command (the
 * host's first touches are not measured); the timed part runs from just
 * before the first command to the handler's TSC read at the last completion. Writes send
 * the pattern of disk.h for the first command's LBAs (every command the same buffer) and
 * end with a FLUSH CACHE timed on its own.
 * RESULT disk-seq ok= op= size= mb= bytes= cycles= mbps= commands= us_per_cmd= mode=
 *   lba48= flush_cycles= tsc_khz= tsc_source= ...
 * mbps: 10^6 bytes per second, two decimals.
 */
#include "ata.h"
#include "cmdline.h"
#include "disk.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"

#define DEFAULT_SIZE_KB 64
#define DEFAULT_MB      16
#define MAX_SIZE_KB     (ATA_MAX_SECTORS48 / 2)
#define MAX_MB          65536

int scn_disk_seq(const struct multiboot_info *mbi)
{
    uint64_t size, mb, seed;
    if (arg_u64("disk-seq", "size", DEFAULT_SIZE_KB, &size) ||
        arg_u64("disk-seq", "mb", DEFAULT_MB, &mb) || arg_u64("disk-seq", "seed", 1, &seed))
        return STATUS_USAGE;
    const char *op = cmdline_get("op");
    if (!op)
        op = "read";
    int write = strcmp(op, "write") == 0;
    if (!write && strcmp(op, "read") != 0) {
        kprintf("RESULT error bad-arg scenario=disk-seq key=op value=%s\n", op);
        return STATUS_USAGE;
    }
    int mode = disk_arg_mode("disk-seq", DISK_MODE_DMA);
    if (mode < 0)
        return STATUS_USAGE;
    const char *bad = mode == DISK_MODE_BOTH ? "mode"
                      : size == 0 || size > MAX_SIZE_KB ? "size"
                      : mb == 0 || mb > MAX_MB || mb * 1024 < size ? "mb" : NULL;
    if (bad) {
        kprintf("RESULT error bad-arg scenario=disk-seq key=%s value=%s\n", bad,
                mode == DISK_MODE_BOTH ? "both" : bad[0] == 's' ? cmdline_get("size")
                : cmdline_get("mb") ? cmdline_get("mb") : "16");
        return STATUS_USAGE;
    }
    int st = disk_setup("disk-seq", mbi, size * 1024);
    if (st != STATUS_OK)
        return st;
    uint32_t count = (uint32_t)(size * 2);
    uint64_t commands = mb * 1024 / size;
    if (commands * count > ata.sectors) {
        kprintf("RESULT disk-seq ok=0 error=disk-too-small mb=%lu sectors=%lu\n", mb,
                ata.sectors);
        return STATUS_FAIL;
    }
    void *buf = (void *)(uintptr_t)ATA_DATA_BUFFER;
    if (write)
        disk_fill(buf, 0, count, seed, NULL);
    else
        disk_poison(buf, size * 1024);          /* guest RAM touched before the clock */
    int dma = mode == DISK_MODE_DMA;
    /* One untimed command first: the host's first DMA into this memory and its first
     * request on the image are not what is measured. */
    int e = write ? ata_write(0, count, buf, dma) : ata_read(0, count, buf, dma);
    uint64_t warm_bytes = ata_stats.bytes;

    uint64_t t0 = rdtsc();
    if (!e)
        e = ata_stream_start(write, dma, 0, count, commands, commands * count, buf);
    if (!e)
        e = ata_stream_wait();
    uint64_t cycles = ata_done_tsc - t0;
    uint64_t flush_cycles = 0;
    if (!e && write) {
        uint64_t f0 = rdtsc();
        e = ata_flush(ata.flush_ext);
        flush_cycles = ata_done_tsc - f0;
    }
    if (e)
        kprintf("disk-seq: %s lba=%lu count=%u failed: %s status=0x%02x error=0x%02x "
                "bm=0x%02x\n", op, ata_last.lba, ata_last.count, ata_strerror(e),
                ata_last.status, ata_last.error, ata_last.bm_status);

    uint64_t bytes = commands * count * ATA_SECTOR_SIZE, whole, hundredths;
    disk_rate(bytes, cycles, &whole, &hundredths);
    const struct tsc_info *tsc = tsc_info();
    int ok = !e && !disk_irq_trouble() && ata_stats.bytes - warm_bytes == bytes;
    kprintf("RESULT disk-seq ok=%d op=%s size=%lu mb=%lu bytes=%lu cycles=%lu mbps=%lu.%02lu "
            "commands=%lu us_per_cmd=%lu mode=%s lba48=%d flush_cycles=%lu tsc_khz=%lu "
            "tsc_source=%s", ok, op, size, mb, bytes, cycles, whole, hundredths, commands,
            cycles * 1000 / tsc->khz / commands, disk_mode_name(mode), ata_options.force_lba48,
            flush_cycles, tsc->khz, tsc->source);
    disk_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
