/*
 * Shared by the memory scenarios (mem-touch, mem-random, mem-ptchurn): where their memory
 * goes, the page tables they build at CPL 3, and the system calls for what only CPL 0 may
 * do (CR3 loads, invlpg).
 *
 * The kit's boot page tables identity-map the first 4 GiB with 2 MiB pages, U/S=1. The
 * scenarios add their own mappings in PML4 slot 1 (MEM_WINDOW, 512 GiB up), with 4 KiB
 * or 2 MiB pages onto any guest-physical range, RAM above 4 GiB included. Their page
 * tables are built at CPL 3 (native speed on kvm_pvm hosts) in a pool in low RAM, which
 * the identity map makes writable from CPL 3; only CR3 and invlpg go through CPL 0,
 * which is emulated there (host.md) and so reported as its own per-operation cost.
 */
#ifndef GUEST_SCN_MEM_H
#define GUEST_SCN_MEM_H

#include <stdint.h>

struct multiboot_info;

#define MEM_WINDOW      0x8000000000ULL         /* PML4 slot 1 */
#define PAGE_4K         0x1000ULL
#define PAGE_2M         0x200000ULL

#define MPTE_P          0x001ULL
#define MPTE_RW         0x002ULL
#define MPTE_US         0x004ULL
#define MPTE_PS         0x080ULL                /* 2 MiB page in a PD entry */
#define MPTE_ADDR       0x000FFFFFFFFFF000ULL
#define MPTE_FLAGS      (MPTE_P | MPTE_RW | MPTE_US)

/* System calls the memory scenarios add (cpu.h syscall_extension), rdi = argument. */
#define SYS_MEM_NOP     16      /* nothing: the cost of the CPL 0 round trip itself */
#define SYS_MEM_CR3     17      /* load CR3 with rdi */
#define SYS_MEM_INVLPG  18      /* invlpg (rdi) */

/* Where a scenario's page-table pool and data lie in guest-physical memory. */
struct mem_plan {
    uint64_t pool_phys, pool_size;      /* identity-mapped, for page tables */
    uint64_t data_phys, data_size;      /* mapped only through MEM_WINDOW */
    int data_is_ram;                    /* 0 only with force=1 (a test of bad mappings) */
};

/*
 * Place `pool_bytes` of page tables and `data_bytes` of data (a multiple of 2 MiB) from
 * the Multiboot memory map and the scenario's arguments:
 *   phys=ADDR   data at this 2 MiB-aligned guest-physical address (default: after the pool)
 *   high=1      data in the RAM above 4 GiB
 *   force=1     accept a phys= range that is not RAM (tests what a VMM does with it)
 * Prints "RESULT error ..." and returns -1 when it cannot.
 */
int mem_plan(const struct multiboot_info *mbi, const char *scenario, uint64_t data_bytes,
             uint64_t pool_bytes, struct mem_plan *plan);

/* Install the SYS_MEM_* calls (CPL 0). */
void mem_syscalls_install(void);

/* A bump allocator of zeroed 4 KiB page-table pages, used at CPL 3. */
struct pt_pool {
    uint64_t next, end;         /* physical == virtual (identity map) */
    int exhausted;
};

void pt_pool_init(struct pt_pool *pool, const struct mem_plan *plan);
uint64_t *pt_alloc(struct pt_pool *pool);      /* NULL when the pool is used up */

/*
 * Map [va, va + size) onto [phys, ...) in the tables under `pml4` with `page` (4 KiB or
 * 2 MiB) pages, allocating tables from `pool`. Returns 0, or -1 if the pool ran out.
 * CPL 3 or 0; the caller flushes (SYS_MEM_CR3) before relying on changed entries.
 */
int mem_map(struct pt_pool *pool, uint64_t *pml4, uint64_t va, uint64_t phys, uint64_t size,
            uint64_t page);

/* The PTE (level 1) or PDE (2 MiB) that maps va, or NULL. */
uint64_t *mem_leaf(uint64_t *pml4, uint64_t va);

/* Page-table bytes a mapping of `size` bytes with `page` pages needs, with slack. */
uint64_t mem_pool_need(uint64_t size, uint64_t page);

/* The kit's own PML4 (entry.S). */
extern uint64_t pml4[];

static inline uint64_t mem_syscall(uint64_t nr, uint64_t arg)    /* from CPL 3 */
{
    __asm__ volatile("int $0x80" : "+a"(nr) : "D"(arg) : "memory");
    return nr;
}

static inline uint64_t read_cr3(void)      /* CPL 0 */
{
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

/* "4k" or "2m" (default 4k) from the argument `pages`; 0 and an error line if neither. */
uint64_t mem_page_arg(const char *scenario);

/* mb= (default `default_mb`; 1 MiB to 1 TiB, even with 2 MiB pages) and pages=;
 * 0, or -1 after an error line. */
int mem_size_args(const char *scenario, uint64_t default_mb, uint64_t *mb, uint64_t *page);

/* At CPL 3: map the plan's data at MEM_WINDOW with `page` pages, in tables from the plan's
 * pool under the kit's PML4, and load CR3. 0, or -1 when the pool ran out. */
int mem_map_window(const struct mem_plan *plan, uint64_t page);

/* Install the SYS_MEM_* calls and run `fn(job)` at CPL 3; `fn` returns nonzero when its
 * page-table pool ran out, which is reported here. 0, or -1 after that error line. */
int mem_run_user(const char *scenario, uint64_t (*fn)(void *), void *job);

/* Print " key=N.NN" nanoseconds per operation from TSC cycles (no 128-bit division). */
void mem_print_ns(const char *key, uint64_t cycles, uint64_t ops, uint64_t tsc_khz);

#endif
