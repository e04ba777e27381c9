/*
 * disk-flush: data is on the medium once FLUSH CACHE completes.
 *   disk-flush [seed=S] [mode=dma|pio] [spin_ms=30000]
 * Writes the pattern of disk.h under seed `pattern` over sectors 0-63 (one command),
 * then FLUSH CACHE and, when the drive has the 48-bit feature set, FLUSH CACHE EXT, and
 * prints RESULT disk-flush done=1 pattern=0x<seed> lba=0 sectors=64 mode=... .
 * Then it spins at CPL 3 without exiting: a test kills the VMM on seeing that line and
 * looks for the pattern in the image. After spin_ms it prints "disk-flush: still running"
 * and exits with status 0 (a bound, not part of the check). The pattern seed is S, or by
 * default taken from the TSC, so that every run writes something new.
 * On failure: RESULT disk-flush done=0 error=... and status 1 at once.
 */
#include "ata.h"
#include "cmdline.h"
#include "cpu.h"
#include "disk.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"

#define FLUSH_SECTORS   64
#define DEFAULT_SPIN_MS 30000
#define MAX_SPIN_MS     600000

static uint64_t spin_user(void *arg)            /* CPL 3, IF=0: native */
{
    uint64_t deadline = rdtsc() + *(const uint64_t *)arg;
    while (rdtsc() < deadline)
        __asm__ volatile("pause");
    return 0;
}

int scn_disk_flush(const struct multiboot_info *mbi)
{
    uint64_t seed, spin_ms;
    uint64_t tsc_seed = (rdtsc() * 0x9E3779B97F4A7C15ULL) | 1;
    if (arg_u64("disk-flush", "seed", tsc_seed, &seed) ||
        arg_u64("disk-flush", "spin_ms", DEFAULT_SPIN_MS, &spin_ms))
        return STATUS_USAGE;
    int mode = disk_arg_mode("disk-flush", DISK_MODE_DMA);
    if (mode < 0)
        return STATUS_USAGE;
    if (mode == DISK_MODE_BOTH || spin_ms > MAX_SPIN_MS) {
        kprintf("RESULT error bad-arg scenario=disk-flush key=%s value=%s\n",
                mode == DISK_MODE_BOTH ? "mode" : "spin_ms",
                mode == DISK_MODE_BOTH ? "both" : cmdline_get("spin_ms"));
        return STATUS_USAGE;
    }
    int st = disk_setup("disk-flush", mbi, FLUSH_SECTORS * ATA_SECTOR_SIZE);
    if (st != STATUS_OK)
        return st;
    void *buf = (void *)(uintptr_t)ATA_DATA_BUFFER;
    disk_fill(buf, 0, FLUSH_SECTORS, seed, NULL);
    const char *step = "write";
    int e = ata_write(0, FLUSH_SECTORS, buf, mode == DISK_MODE_DMA);
    if (!e) {
        step = "flush";
        e = ata_flush(0);
    }
    if (!e && ata.flush_ext) {
        step = "flush-ext";
        e = ata_flush(1);
    }
    if (e || disk_irq_trouble()) {
        kprintf("RESULT disk-flush done=0 error=%s step=%s status=0x%02x ata_error=0x%02x",
                e ? ata_strerror(e) : "interrupts", step, ata_last.status, ata_last.error);
        disk_print_stats();
        kprintf("\n");
        return STATUS_FAIL;
    }
    kprintf("RESULT disk-flush done=1 pattern=0x%016lx lba=0 sectors=%u mode=%s flush_ext=%d",
            seed, FLUSH_SECTORS, disk_mode_name(mode), ata.flush_ext);
    disk_print_stats();
    kprintf("\n");
    uint64_t cycles = tsc_us(spin_ms * 1000);
    run_user(spin_user, &cycles);
    kprintf("disk-flush: still running after %lu ms\n", spin_ms);
    return STATUS_OK;
}
