/*
 * A scenario reads its arguments with cmdline_get()/arg_u64(), prints its
 * "RESULT <name> key=value ..." line(s) and returns an exit status (STATUS_*).
 * To add one: write scn_<name>.c, declare it here, add it to the table in main.c.
 */
#ifndef GUEST_SCENARIO_H
#define GUEST_SCENARIO_H

#include <stdint.h>

struct multiboot_info;

struct scenario {
    const char *name;
    int (*run)(const struct multiboot_info *mbi);
};

int scn_hello(const struct multiboot_info *mbi);
int scn_exits(const struct multiboot_info *mbi);
int scn_compute(const struct multiboot_info *mbi);
int scn_triple(const struct multiboot_info *mbi);
int scn_strio(const struct multiboot_info *mbi);
int scn_fault(const struct multiboot_info *mbi);
int scn_timer(const struct multiboot_info *mbi);
int scn_pic(const struct multiboot_info *mbi);
int scn_rtc(const struct multiboot_info *mbi);
int scn_echo(const struct multiboot_info *mbi);
int scn_uart_irq(const struct multiboot_info *mbi);
int scn_reset(const struct multiboot_info *mbi);
int scn_disk_identify(const struct multiboot_info *mbi);
int scn_disk_verify(const struct multiboot_info *mbi);
int scn_disk_seq(const struct multiboot_info *mbi);
int scn_disk_overlap(const struct multiboot_info *mbi);
int scn_disk_flush(const struct multiboot_info *mbi);
int scn_net_info(const struct multiboot_info *mbi);
int scn_net_tx(const struct multiboot_info *mbi);
int scn_net_rx(const struct multiboot_info *mbi);
int scn_net_echo(const struct multiboot_info *mbi);
int scn_vga_text(const struct multiboot_info *mbi);
int scn_vbe(const struct multiboot_info *mbi);
int scn_kbd(const struct multiboot_info *mbi);
int scn_fb_fill(const struct multiboot_info *mbi);
int scn_fb_blit(const struct multiboot_info *mbi);
int scn_fb_scroll(const struct multiboot_info *mbi);
int scn_mem_touch(const struct multiboot_info *mbi);
int scn_mem_random(const struct multiboot_info *mbi);
int scn_mem_ptchurn(const struct multiboot_info *mbi);

#endif
