/* Multiboot 1 boot information (Multiboot Specification 0.6.96, section 3.3). */
#ifndef GUEST_MULTIBOOT_H
#define GUEST_MULTIBOOT_H

#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002

#define MBI_FLAG_MEM     (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MMAP    (1u << 6)

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower;         /* KiB below 1 MiB */
    uint32_t mem_upper;         /* KiB above 1 MiB, up to the first hole */
    uint32_t boot_device;
    uint32_t cmdline;           /* physical address of a C string */
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;
    uint32_t mmap_addr;
} __attribute__((packed));

/* "size" does not count itself: the next entry is at (char *)e + e->size + 4. */
struct multiboot_mmap_entry {
    uint32_t size;
    uint64_t addr;
    uint64_t len;
    uint32_t type;              /* 1: available RAM */
} __attribute__((packed));

#endif
