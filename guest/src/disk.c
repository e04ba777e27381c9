/* Shared parts of the disk-* scenarios (see disk.h). */
#include "disk.h"
#include "ata.h"
#include "cmdline.h"
#include "cpu.h"
#include "kit.h"
#include "multiboot.h"
#include "pic.h"
#include "tsc.h"

uint64_t disk_pattern(uint64_t seed, uint64_t lba, unsigned i)
{
    uint64_t v = (lba * DISK_QWORDS_PER_SECTOR + i) * 0x9E3779B97F4A7C15ULL + seed;
    v ^= v >> 31;
    v *= 0xBF58476D1CE4E5B9ULL;
    v ^= v >> 29;
    return v;
}

struct pattern_job {
    uint64_t *buf;
    uint64_t lba, seed, count, bytes;
    uint64_t *hash, *first_bad;
};

static uint64_t fill_user(void *arg)            /* CPL 3 */
{
    struct pattern_job *job = arg;
    uint64_t *p = job->buf, h = job->hash ? *job->hash : 0;
    for (uint64_t s = 0; s < job->count; s++)
        for (unsigned i = 0; i < DISK_QWORDS_PER_SECTOR; i++) {
            uint64_t v = disk_pattern(job->seed, job->lba + s, i);
            *p++ = v;
            h = (h ^ v) * DISK_FNV_PRIME;
        }
    if (job->hash)
        *job->hash = h;
    return 0;
}

static uint64_t check_user(void *arg)           /* CPL 3 */
{
    struct pattern_job *job = arg;
    uint64_t *p = job->buf, h = *job->hash, bad = 0;
    for (uint64_t s = 0; s < job->count; s++) {
        uint64_t diff = 0;
        for (unsigned i = 0; i < DISK_QWORDS_PER_SECTOR; i++) {
            uint64_t v = p[i];
            diff |= v ^ disk_pattern(job->seed, job->lba + s, i);
            h = (h ^ v) * DISK_FNV_PRIME;
            p[i] = DISK_POISON;
        }
        if (diff) {
            if (!bad && *job->first_bad == UINT64_MAX)
                *job->first_bad = job->lba + s;
            bad++;
        }
        p += DISK_QWORDS_PER_SECTOR;
    }
    *job->hash = h;
    return bad;
}

static uint64_t poison_user(void *arg)          /* CPL 3 */
{
    struct pattern_job *job = arg;
    for (uint64_t i = 0; i < job->bytes / 8; i++)
        job->buf[i] = DISK_POISON;
    return 0;
}

void disk_fill(void *buf, uint64_t lba, uint32_t count, uint64_t seed, uint64_t *hash)
{
    struct pattern_job job = { buf, lba, seed, count, 0, hash, NULL };
    run_user(fill_user, &job);
}

uint64_t disk_check(void *buf, uint64_t lba, uint32_t count, uint64_t seed, uint64_t *hash,
                    uint64_t *first_bad)
{
    struct pattern_job job = { buf, lba, seed, count, 0, hash, first_bad };
    return run_user(check_user, &job);
}

void disk_poison(void *buf, uint64_t bytes)
{
    struct pattern_job job = { buf, 0, 0, 0, bytes, NULL, NULL };
    run_user(poison_user, &job);
}

int disk_arg_mode(const char *scenario, int def)
{
    const char *m = cmdline_get("mode");
    if (!m)
        return def;
    if (strcmp(m, "pio") == 0)
        return DISK_MODE_PIO;
    if (strcmp(m, "dma") == 0)
        return DISK_MODE_DMA;
    if (strcmp(m, "both") == 0)
        return DISK_MODE_BOTH;
    kprintf("RESULT error bad-arg scenario=%s key=mode value=%s\n", scenario, m);
    return -1;
}

const char *disk_mode_name(int mode)
{
    return mode == DISK_MODE_PIO ? "pio" : mode == DISK_MODE_DMA ? "dma" : "both";
}

int disk_setup(const char *scenario, const struct multiboot_info *mbi, uint64_t buffer_bytes)
{
    uint64_t lba48, trace, noirq, irq_timeout_ms;
    if (arg_u64(scenario, "lba48", 0, &lba48) || arg_u64(scenario, "trace", 0, &trace) ||
        arg_u64(scenario, "noirq", 0, &noirq) ||
        arg_u64(scenario, "irq_timeout_ms", 0, &irq_timeout_ms))
        return STATUS_USAGE;
    ata_options = (struct ata_options){ lba48 != 0, trace != 0, noirq != 0, irq_timeout_ms };
    uint64_t need = ATA_DATA_BUFFER + buffer_bytes;
    uint64_t ram = mbi->flags & MBI_FLAG_MEM ? (1024ULL + mbi->mem_upper) << 10 : 0;
    if ((uintptr_t)_kernel_end > ATA_DMA_AREA || ram < need) {
        kprintf("RESULT %s ok=0 error=memory need=0x%lx ram=0x%lx\n", scenario, need, ram);
        return STATUS_FAIL;
    }
    (void)tsc_info();                   /* calibrate before any timing or timeout */
    pic_init();
    const char *why;
    int e = ata_init(&why);
    if (e) {
        kprintf("RESULT %s ok=0 error=%s step=%s status=0x%x ata_error=0x%x", scenario,
                ata_strerror(e), why, ata_last.status, ata_last.error);
        disk_print_stats();
        kprintf("\n");
        return STATUS_FAIL;
    }
    if (ata_options.force_lba48 && !ata.lba48) {
        kprintf("RESULT %s ok=0 error=no-lba48\n", scenario);
        return STATUS_FAIL;
    }
    kprintf("disk: pci=%02x:%02x.%x id=%04x:%04x prog_if=0x%02x bm=0x%x pci_cmd=0x%04x->0x%04x "
            "bar4_assigned=%d idetim_set=%d\n", ata.pci_bus, ata.pci_dev, ata.pci_fn,
            ata.vendor, ata.device, ata.prog_if, ata.bm, ata.pci_command_before,
            ata.pci_command, ata.bar4_assigned, ata.idetim_enabled);
    kprintf("disk: model=\"%s\" serial=\"%s\" sectors=%lu lba48=%d dma=%d\n", ata.model,
            ata.serial, ata.sectors, ata.lba48, ata.dma);
    return STATUS_OK;
}

void disk_print_stats(void)
{
    kprintf(" irqs=%lu no_irq=%lu spurious=%lu bm_noint=%lu cmd_errors=%lu ata_cmds=%lu "
            "pio_cmds=%lu dma_cmds=%lu lba48_cmds=%lu", ata_stats.irqs, ata_stats.no_irq,
            ata_stats.spurious, ata_stats.bm_no_interrupt, ata_stats.errors,
            ata_stats.commands, ata_stats.pio_commands, ata_stats.dma_commands,
            ata_stats.lba48_commands);
}

int disk_irq_trouble(void) { return ata_stats.no_irq || ata_stats.bm_no_interrupt; }

void disk_rate(uint64_t bytes, uint64_t cycles, uint64_t *whole, uint64_t *hundredths)
{
    /* bytes / (cycles / (khz * 1000)) / 1e6, times 100 */
    uint64_t x100 = cycles ? bytes * tsc_info()->khz / cycles / 10 : 0;
    *whole = x100 / 100;
    *hundredths = x100 % 100;
}
