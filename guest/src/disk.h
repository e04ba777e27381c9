/*
 * What the disk-* scenarios share: setup (memory check, PIC, ATA driver), the sector
 * pattern and its checksum (computed at CPL 3: CPL 0 is emulated here), argument helpers.
 *
 * Pattern: 64-bit word i (0-63) of sector `lba` under `seed` is
 *     v = (lba * 64 + i) * 0x9E3779B97F4A7C15 + seed;  v ^= v >> 31;
 *     v *= 0xBF58476D1CE4E5B9;  v ^= v >> 29          (mod 2^64, little-endian on disk)
 * Checksum: FNV-1a over the 64-bit words in LBA order: h = 0xCBF29CE484222325, then for
 * each word h = (h ^ word) * 0x100000001B3. tests/guestkit_disk.py computes both the same way.
 */
#ifndef GUEST_DISK_H
#define GUEST_DISK_H

#include <stdint.h>

struct multiboot_info;

#define DISK_QWORDS_PER_SECTOR 64
#define DISK_FNV_OFFSET 0xCBF29CE484222325ULL
#define DISK_FNV_PRIME  0x100000001B3ULL
#define DISK_POISON     0xDEADDEADDEADDEADULL

#define DISK_MODE_PIO  1
#define DISK_MODE_DMA  2
#define DISK_MODE_BOTH (DISK_MODE_PIO | DISK_MODE_DMA)

/*
 * Check that RAM reaches ATA_DATA_BUFFER + buffer_bytes, run pic_init() and ata_init()
 * with the options lba48=1, trace=1 (a line per completed command), and the test hooks
 * noirq=1 (IRQ 14 stays masked: the driver falls back to polling) and irq_timeout_ms=N
 * (how long it waits for an interrupt first). On failure prints
 * "RESULT <scenario> ok=0 error=<why> ..." and returns STATUS_FAIL; STATUS_OK otherwise.
 */
int disk_setup(const char *scenario, const struct multiboot_info *mbi, uint64_t buffer_bytes);

/* mode=pio|dma|both (default def); -1 (after a bad-arg RESULT line) when malformed. */
int disk_arg_mode(const char *scenario, int def);
const char *disk_mode_name(int mode);

uint64_t disk_pattern(uint64_t seed, uint64_t lba, unsigned i);

/* At CPL 3: fill `count` sectors of buf with the pattern of lba.., folding them into
 * *hash (FNV-1a) when hash is not NULL. */
void disk_fill(void *buf, uint64_t lba, uint32_t count, uint64_t seed, uint64_t *hash);

/* At CPL 3: compare `count` sectors of buf with the pattern, fold them into *hash,
 * then overwrite them with DISK_POISON. Returns how many sectors differ; the first
 * differing LBA goes to *first_bad when it is still UINT64_MAX. */
uint64_t disk_check(void *buf, uint64_t lba, uint32_t count, uint64_t seed, uint64_t *hash,
                    uint64_t *first_bad);

/* At CPL 3: fill `bytes` of buf with DISK_POISON. */
void disk_poison(void *buf, uint64_t bytes);

/* " irqs=.. no_irq=.. spurious=.. bm_noint=.. cmd_errors=.. ata_cmds=.. pio_cmds=..
 * dma_cmds=.. lba48_cmds=.." for the end of a RESULT line (no newline). */
void disk_print_stats(void);

/* Whether the driver saw anything that makes a run fail regardless of its data:
 * commands finished by polling, or DMA completions without the bus-master bit. */
int disk_irq_trouble(void);

/* "MB/s" with two decimals for bytes over cycles of the TSC: whole part and hundredths. */
void disk_rate(uint64_t bytes, uint64_t cycles, uint64_t *whole, uint64_t *hundredths);

#endif
