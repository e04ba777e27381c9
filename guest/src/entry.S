/*
 * Multiboot 1 entry. The loader leaves us in flat 32-bit protected mode with paging and
 * interrupts off, EAX = 0x2BADB002, EBX = multiboot info, and no usable stack or GDT.
 * On the target host only long-mode paging works (see docs/host.md), so we go straight
 * to long mode: own GDT, BSS cleared, static identity page tables, PAE + LME + PG.
 */
#include "layout.h"

#define MB_MAGIC        0x1BADB002
#define MB_FLAGS        0x00000003      /* bit 0: page-align modules, bit 1: memory info */

#define CR0_PE          (1 << 0)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)
#define MSR_EFER        0xC0000080
#define EFER_LME        (1 << 8)

#define PTE_P           0x001
#define PTE_RW          0x002
#define PTE_US          0x004           /* user-accessible: CPL 3 code runs here too */
#define PTE_PWT         0x008
#define PTE_PCD         0x010
#define PTE_PS          0x080           /* 2 MiB page in a PD entry */

/* ---------------------------------------------------------------------------------- */
        .section .multiboot, "a"
        .balign 4
multiboot_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

/* ---------------------------------------------------------------------------------- */
        .section .text.entry, "ax"
        .code32
        .globl _start
_start:
        cli
        cld
        lgdt    gdtr32                  /* DS is flat per Multiboot, so this works */
        ljmp    $SEL_CODE32, $1f
1:      movl    $SEL_DATA, %ecx
        movl    %ecx, %ds
        movl    %ecx, %es
        movl    %ecx, %ss
        movl    %ecx, %fs
        movl    %ecx, %gs

        movl    %eax, mb_magic          /* in .data: survives the BSS clear */
        movl    %ebx, mb_info

        movl    $__bss_start, %edi
        movl    $__bss_end, %ecx
        subl    %edi, %ecx
        shrl    $2, %ecx
        xorl    %eax, %eax
        rep stosl

        movl    $boot_stack_top, %esp
        pushl   $2                      /* EFLAGS: IF, DF, AC, ... all clear */
        popfl

        /* Long mode available? Without a CPUID table from the VMM it is not, and the
         * EFER write below would fault (triple fault): say so on COM1 instead. */
        movl    $0x80000000, %eax
        cpuid
        cmpl    $0x80000001, %eax
        jb      no_long_mode
        movl    $0x80000001, %eax
        cpuid
        btl     $29, %edx
        jnc     no_long_mode

        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $CR4_PAE, %eax
        movl    %eax, %cr4
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $(CR0_PG | CR0_PE), %eax
        movl    %eax, %cr0
        ljmp    $SEL_KCODE64, $long_entry

no_long_mode:
        movl    $no_lm_msg, %esi
        movw    $0x3F8, %dx
2:      lodsb
        testb   %al, %al
        jz      3f
        outb    %al, %dx
        jmp     2b
3:      movw    $EXIT_PORT, %dx
        movl    $4, %eax                /* status 4: no long mode */
        outl    %eax, %dx
4:      cli
        hlt
        jmp     4b

        .code64
long_entry:
        movl    $SEL_DATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        xorl    %eax, %eax
        movl    %eax, %fs
        movl    %eax, %gs
        movq    $boot_stack_top, %rsp
        movl    mb_magic(%rip), %edi
        movl    mb_info(%rip), %esi
        call    kmain
5:      cli
        hlt
        jmp     5b

/* ---------------------------------------------------------------------------------- */
        .section .rodata
no_lm_msg:
        .asciz  "FATAL no long mode (CPUID 0x80000001 EDX bit 29 clear)\n"

/* ---------------------------------------------------------------------------------- */
        .section .data
        .balign 8
mb_magic:       .long 0
mb_info:        .long 0

        .balign 16
        .globl gdt
gdt:
        .quad 0                         /* 0x00 null */
        .quad 0x00CF9A000000FFFF        /* 0x08 32-bit code, DPL 0 (boot only) */
        .quad 0x00AF9A000000FFFF        /* 0x10 64-bit code, DPL 0 */
        .quad 0x00CF92000000FFFF        /* 0x18 data, DPL 0 */
        .quad 0x00CFFA000000FFFF        /* 0x20 32-bit code, DPL 3 (sysret layout only) */
        .quad 0x00CFF2000000FFFF        /* 0x28 data, DPL 3 */
        .quad 0x00AFFA000000FFFF        /* 0x30 64-bit code, DPL 3 */
        .quad 0, 0                      /* 0x38 64-bit TSS, filled in by cpu_init() */
gdt_end:

gdtr32:
        .word   gdt_end - gdt - 1
        .long   gdt

/*
 * Identity map of the first 4 GiB with 2 MiB pages, built by the assembler so that no
 * CPL 0 loop (emulated, slow on this host) has to write 2048 entries at boot.
 * All levels are U/S=1 so that CPL 3 code can run anywhere; the top GiB (MMIO hole)
 * is uncached.
 */
        .section .data.pagetables, "aw"
        .balign 4096
        .globl pml4
pml4:
        .quad   pdpt + (PTE_P | PTE_RW | PTE_US)
        .fill   511, 8, 0
pdpt:
        .quad   pd + 0x0000 + (PTE_P | PTE_RW | PTE_US)
        .quad   pd + 0x1000 + (PTE_P | PTE_RW | PTE_US)
        .quad   pd + 0x2000 + (PTE_P | PTE_RW | PTE_US)
        .quad   pd + 0x3000 + (PTE_P | PTE_RW | PTE_US)
        .fill   508, 8, 0
pd:
        .set    addr, 0
        .rept   2048
        .if     addr >= 0xC0000000
        .quad   addr + (PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_PCD | PTE_PWT)
        .else
        .quad   addr + (PTE_P | PTE_RW | PTE_US | PTE_PS)
        .endif
        .set    addr, addr + 0x200000
        .endr

/* ---------------------------------------------------------------------------------- */
        .section .bss
        .balign 16
boot_stack:
        .skip   BOOT_STACK_SIZE
        .globl boot_stack_top
boot_stack_top:

        .section .note.GNU-stack, "", @progbits
