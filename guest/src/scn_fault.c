/*
 * fault: a deliberate exception with the IDT in place, to exercise the PANIC path.
 *   fault [kind=ud|de|gp|pf|bp] [cpl=0|3]
 * kind=bp executes int3; on hosts whose KVM emulates CPL 0 code without int3 (host.md) that
 * ends the run with an emulation failure instead, which is how the VMM's diagnostic for
 * KVM_EXIT_INTERNAL_ERROR is tested.
 * Prints "RESULT fault expect=panic vector=N cpl=C", then the handler prints
 * "PANIC vector=N ..." and the guest exits with status 3 (STATUS_PANIC).
 */
#include "cmdline.h"
#include "cpu.h"
#include "kit.h"
#include "scenario.h"

#define UNMAPPED_ADDR 0x100000000ULL    /* only the first 4 GiB are mapped */
#define NONCANONICAL_ADDR 0x8000000000000000ULL

struct fault_kind {
    const char *name;
    unsigned vector;
};

static const struct fault_kind kinds[] = {
    { "ud", 6 }, { "de", 0 }, { "gp", 13 }, { "pf", 14 }, { "bp", 3 },
};

static uint64_t raise_fault(void *arg)          /* CPL 0 or CPL 3 */
{
    unsigned vector = (unsigned)(uintptr_t)arg;
    switch (vector) {
    case 0:
        __asm__ volatile("xorl %%ecx, %%ecx\n\tdivl %%ecx" ::: "eax", "ecx", "edx");
        break;
    case 13:
        __asm__ volatile("movq (%0), %%rax" :: "r"(NONCANONICAL_ADDR) : "rax", "memory");
        break;
    case 14:
        __asm__ volatile("movq (%0), %%rax" :: "r"(UNMAPPED_ADDR) : "rax", "memory");
        break;
    case 3:
        __asm__ volatile("int3");
        break;
    default:
        __asm__ volatile("ud2");
        break;
    }
    return 0;
}

int scn_fault(const struct multiboot_info *mbi)
{
    (void)mbi;
    const char *name = cmdline_get("kind");
    uint64_t cpl;
    if (arg_u64("fault", "cpl", 0, &cpl))
        return STATUS_USAGE;
    if (!name)
        name = "ud";
    const struct fault_kind *k = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
        if (strcmp(kinds[i].name, name) == 0)
            k = &kinds[i];
    if (!k || (cpl != 0 && cpl != 3)) {
        kprintf("RESULT error bad-arg scenario=fault key=%s value=%s\n", k ? "cpl" : "kind",
                k ? cmdline_get("cpl") : name);
        return STATUS_USAGE;
    }
    kprintf("RESULT fault expect=panic kind=%s vector=%u cpl=%lu\n", k->name, k->vector, cpl);
    void *arg = (void *)(uintptr_t)k->vector;
    if (cpl == 3)
        run_user(raise_fault, arg);
    else
        raise_fault(arg);
    kprintf("RESULT error fault-survived\n");
    return STATUS_FAIL;
}
