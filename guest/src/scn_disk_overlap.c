/*
 * disk-overlap: does disk I/O progress while the CPU computes?
 *   disk-overlap [mb=16] [size=64] [ms=0]
 * After an untimed pass of the same reads (warm-up), three timed phases, all with DMA
 * reads of size KiB per command over the first mb MiB, each next command issued from the
 * IRQ 14 handler (so no CPL 3 code is needed to keep the disk busy), and CPL 3 code
 * running with RFLAGS.IF=1:
 *   1. I/O alone: the reads while CPL 3 only waits            -> io_alone_cycles
 *   2. compute alone: the compute loop of scn_compute.c (LCG and mixing step, TSC checked
 *      every CHUNK steps) for ms of TSC time, or, with ms=0, for as long as phase 1 took;
 *      work = steps done                                        -> compute_alone_cycles
 *   3. together: the reads started, then the same loop for exactly that work; then wait
 *      for the reads. From the start of the phase: io_cycles to the last completion,
 *      compute_cycles to the end of the loop, together_cycles (= total_cycles) to
 *      whichever ended last. With --ide-dma sync under pyhvm each transfer runs inside the
 *      handler's bus-master start, so IRQ 14 is pending again as the handler returns and
 *      the loop only starts once the reads are done: compute_cycles ~ together_cycles.
 * serial_cycles = io_alone + compute_alone (no overlap at all), ideal_cycles =
 * max(io_alone, compute_alone) (perfect overlap); overlap_pct = how much of the possible
 * saving was had: (serial - together) * 100 / (serial - ideal), 0 for none, 100 for all.
 * RESULT disk-overlap ok= io_alone_cycles= compute_alone_cycles= together_cycles=
 *   io_cycles= compute_cycles= total_cycles= serial_cycles= ideal_cycles= overlap_pct=
 *   work= bytes= commands= size= mb= mbps_alone= mbps_together= irqs_together=
 *   warmup_cycles= tsc_khz= ...
 * (the loop is a copy of scn_compute.c's, which keeps it to itself).
 */
#include "ata.h"
#include "cmdline.h"
#include "cpu.h"
#include "disk.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"

#define DEFAULT_MB      16
#define DEFAULT_SIZE_KB 64
#define MAX_SIZE_KB     (ATA_MAX_SECTORS48 / 2)
#define MAX_MS          60000
#define CHUNK           65536

struct compute_job {
    uint64_t duration;          /* > 0: run this many TSC cycles */
    uint64_t work_target;       /* duration 0: run until this much work is done */
    uint64_t t_start, t_end;    /* TSC, read at CPL 3 */
    uint64_t work, checksum;
};

static uint64_t compute_user(void *arg)         /* CPL 3, IF=1 */
{
    struct compute_job *job = arg;
    uint64_t x = 0x9E3779B97F4A7C15ULL, acc = 0, work = 0;
    uint64_t deadline = (job->t_start = rdtsc()) + job->duration;
    for (;;) {
        for (unsigned i = 0; i < CHUNK; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            acc ^= x >> 29;
            acc = (acc << 7) | (acc >> 57);
            __asm__ volatile("" : "+r"(x), "+r"(acc));
        }
        work += CHUNK;
        job->t_end = rdtsc();
        if (job->duration ? job->t_end >= deadline : work >= job->work_target)
            break;
    }
    job->work = work;
    job->checksum = acc;
    return work;
}

static void compute(struct compute_job *job)
{
    uint64_t saved = user_rflags;
    user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
    run_user(compute_user, job);
    user_rflags = saved;
}

static int64_t pct(int64_t num, int64_t den) { return den ? num * 100 / den : 0; }

int scn_disk_overlap(const struct multiboot_info *mbi)
{
    uint64_t mb, size, ms;
    if (arg_u64("disk-overlap", "mb", DEFAULT_MB, &mb) ||
        arg_u64("disk-overlap", "size", DEFAULT_SIZE_KB, &size) ||
        arg_u64("disk-overlap", "ms", 0, &ms))
        return STATUS_USAGE;
    const char *bad = size == 0 || size > MAX_SIZE_KB ? "size"
                      : mb == 0 || mb * 1024 < size ? "mb" : ms > MAX_MS ? "ms" : NULL;
    if (bad) {
        kprintf("RESULT error bad-arg scenario=disk-overlap key=%s value=%s\n", bad,
                cmdline_get(bad) ? cmdline_get(bad) : "default");
        return STATUS_USAGE;
    }
    int st = disk_setup("disk-overlap", mbi, size * 1024);
    if (st != STATUS_OK)
        return st;
    uint32_t count = (uint32_t)(size * 2);
    uint64_t commands = mb * 1024 / size, sectors = commands * count;
    if (sectors > ata.sectors) {
        kprintf("RESULT disk-overlap ok=0 error=disk-too-small mb=%lu sectors=%lu\n", mb,
                ata.sectors);
        return STATUS_FAIL;
    }
    void *buf = (void *)(uintptr_t)ATA_DATA_BUFFER;
    const struct tsc_info *tsc = tsc_info();

    /* 0. warm-up, untimed: guest RAM of the buffer touched, the host's first accesses
     * (page faults, image cache, worker threads) out of the way */
    disk_poison(buf, size * 1024);
    uint64_t t0 = rdtsc();
    int e = ata_stream_start(0, 1, 0, count, commands, sectors, buf);
    if (!e)
        e = ata_stream_wait();
    uint64_t warmup = ata_done_tsc - t0;

    /* 1. I/O alone */
    t0 = rdtsc();
    if (!e)
        e = ata_stream_start(0, 1, 0, count, commands, sectors, buf);
    if (!e)
        e = ata_stream_wait();
    uint64_t io_alone = ata_done_tsc - t0;

    /* 2. compute alone */
    static struct compute_job alone, both;
    alone = (struct compute_job){ ms ? ms * tsc->khz : io_alone, 0, 0, 0, 0, 0 };
    compute(&alone);
    uint64_t compute_alone = alone.t_end - alone.t_start;

    /* 3. together */
    both = (struct compute_job){ 0, alone.work, 0, 0, 0, 0 };
    uint64_t irqs_before = ata_stats.irqs;
    t0 = rdtsc();
    int e2 = ata_stream_start(0, 1, 0, count, commands, sectors, buf);
    if (!e2)
        compute(&both);
    uint64_t io_before_compute_end = !ata_stream_busy();
    if (!e2)
        e2 = ata_stream_wait();
    uint64_t io_end = ata_done_tsc;
    uint64_t compute_end = e2 ? t0 : both.t_end;
    uint64_t together = (io_end > compute_end ? io_end : compute_end) - t0;
    uint64_t io_cycles = io_end - t0, compute_cycles = compute_end - t0;
    if (e || e2)
        kprintf("disk-overlap: read lba=%lu count=%u failed: %s status=0x%02x error=0x%02x "
                "bm=0x%02x\n", ata_last.lba, ata_last.count, ata_strerror(e ? e : e2),
                ata_last.status, ata_last.error, ata_last.bm_status);

    uint64_t bytes = sectors * ATA_SECTOR_SIZE;
    uint64_t serial = io_alone + compute_alone;
    uint64_t ideal = io_alone > compute_alone ? io_alone : compute_alone;
    uint64_t a_whole, a_frac, t_whole, t_frac;
    disk_rate(bytes, io_alone, &a_whole, &a_frac);
    disk_rate(bytes, io_cycles, &t_whole, &t_frac);
    int ok = !e && !e2 && !disk_irq_trouble() && ata_stats.bytes == 3 * bytes &&
             both.work == alone.work;
    kprintf("RESULT disk-overlap ok=%d io_alone_cycles=%lu compute_alone_cycles=%lu "
            "together_cycles=%lu io_cycles=%lu compute_cycles=%lu total_cycles=%lu "
            "serial_cycles=%lu ideal_cycles=%lu overlap_pct=%ld io_slowdown_pct=%ld "
            "compute_slowdown_pct=%ld io_done_first=%lu work=%lu bytes=%lu commands=%lu "
            "size=%lu mb=%lu mbps_alone=%lu.%02lu mbps_together=%lu.%02lu irqs_together=%lu "
            "warmup_cycles=%lu tsc_khz=%lu tsc_source=%s", ok, io_alone, compute_alone,
            together, io_cycles, compute_cycles, together, serial, ideal,
            pct((int64_t)serial - (int64_t)together, (int64_t)serial - (int64_t)ideal),
            pct((int64_t)io_cycles - (int64_t)io_alone, (int64_t)io_alone),
            pct((int64_t)compute_cycles - (int64_t)compute_alone, (int64_t)compute_alone),
            io_before_compute_end, alone.work, bytes, commands, size, mb, a_whole, a_frac,
            t_whole, t_frac, ata_stats.irqs - irqs_before, warmup, tsc->khz, tsc->source);
    disk_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
