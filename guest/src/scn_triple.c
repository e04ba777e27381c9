/*
 * triple: a deliberate triple fault. With a zero-limit IDT, ud2 raises #UD, which cannot
 * be delivered (#GP), nor can the #GP (#DF), nor the #DF: the CPU shuts down, and a VMM
 * sees a shutdown (KVM_EXIT_SHUTDOWN; QEMU with -no-reboot exits with status 0).
 *   triple [how=ud2|div]
 */
#include "cmdline.h"
#include "kit.h"
#include "scenario.h"

int scn_triple(const struct multiboot_info *mbi)
{
    (void)mbi;
    const char *how = cmdline_get("how");
    if (!how)
        how = "ud2";
    if (strcmp(how, "ud2") != 0 && strcmp(how, "div") != 0) {
        kprintf("RESULT error bad-arg scenario=triple key=how value=%s\n", how);
        return STATUS_USAGE;
    }
    kprintf("RESULT triple expect=shutdown how=%s\n", how);
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) empty = { 0, 0 };
    __asm__ volatile("lidt %0" :: "m"(empty));
    if (strcmp(how, "div") == 0)
        __asm__ volatile("xorl %%ecx, %%ecx\n\tdivl %%ecx" ::: "eax", "ecx", "edx");
    else
        __asm__ volatile("ud2");
    kprintf("RESULT error triple-survived\n");
    return STATUS_FAIL;
}
