/* Boot flow in long mode: tables, UART, banner, command line, scenario, debug-exit. */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "layout.h"
#include "multiboot.h"
#include "scenario.h"
#include "serial.h"

static const struct scenario scenarios[] = {
    { "hello", scn_hello },
    { "exits", scn_exits },
    { "compute", scn_compute },
    { "triple", scn_triple },
    { "strio", scn_strio },
    { "fault", scn_fault },
    { "timer", scn_timer },
    { "pic", scn_pic },
    { "rtc", scn_rtc },
    { "echo", scn_echo },
    { "uart-irq", scn_uart_irq },
    { "reset", scn_reset },
    { "disk-identify", scn_disk_identify },
    { "disk-verify", scn_disk_verify },
    { "disk-seq", scn_disk_seq },
    { "disk-overlap", scn_disk_overlap },
    { "disk-flush", scn_disk_flush },
    { "net-info", scn_net_info },
    { "net-tx", scn_net_tx },
    { "net-rx", scn_net_rx },
    { "net-echo", scn_net_echo },
    { "vga-text", scn_vga_text },
    { "vbe", scn_vbe },
    { "kbd", scn_kbd },
    { "fb-fill", scn_fb_fill },
    { "fb-blit", scn_fb_blit },
    { "fb-scroll", scn_fb_scroll },
    { "mem-touch", scn_mem_touch },
    { "mem-random", scn_mem_random },
    { "mem-ptchurn", scn_mem_ptchurn },
};

void kit_exit(uint32_t status)
{
    outl(EXIT_PORT, status);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void kmain(uint32_t magic, uint32_t mbi_addr);

void kmain(uint32_t magic, uint32_t mbi_addr)
{
    cpu_init();
    serial_init();
    kprintf("pyhvm guest kit %s\n", KIT_VERSION);

    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        kprintf("RESULT error bad-magic eax=0x%x\n", magic);
        kit_exit(STATUS_USAGE);
    }
    const struct multiboot_info *mbi = (const struct multiboot_info *)(uintptr_t)mbi_addr;
    cmdline_init(mbi->flags & MBI_FLAG_CMDLINE ? (const char *)(uintptr_t)mbi->cmdline : NULL);

    const char *name = cmdline_get("scenario");
    if (!name)
        name = "hello";
    for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++)
        if (strcmp(scenarios[i].name, name) == 0)
            kit_exit((uint32_t)scenarios[i].run(mbi));
    kprintf("RESULT error unknown-scenario name=%s\n", name);
    kit_exit(STATUS_USAGE);
}
