/*
 * What the vbe and fb-* scenarios share: arguments (mode=, io=, frames=/seconds=/ms=,
 * hold=), setting the mode (with the pattern's palette at 8 bpp), rates, and holding the
 * picture for a host screenshot.
 */
#ifndef GUEST_VBE_FB_H
#define GUEST_VBE_FB_H

#include <stdint.h>

#include "vbe.h"

struct multiboot_info;

#define VBE_FB_DEFAULT_MODE "640x480x32"
/* RAM for a blit source or a saved picture: 64 MiB up, clear of the disk and net areas. */
#define VBE_RAM_AREA        0x4000000ULL

/* mode=, io=: probe the device, set the mode, load the pattern palette for 8 bpp and
 * calibrate the TSC; STATUS_OK, or the status to return (the RESULT line printed). */
int vbe_fb_start(const char *scenario, const char *default_mode, struct vbe_device *dev,
                 struct vbe_mode *mode);

/* frames=N (default def) or, when given, seconds=S / ms=M of TSC time: *deadline is the
 * time in TSC cycles (0: count frames). -1 after printing a bad-arg line. */
int vbe_fb_arg_run(const char *scenario, uint64_t def_frames, uint64_t *frames,
                   uint64_t *deadline);

/* hold=0|1; -1 after printing a bad-arg line. */
int vbe_fb_arg_hold(const char *scenario, int *hold);

/* Check that RAM reaches VBE_RAM_AREA + bytes; prints the error line when not. */
int vbe_fb_ram(const char *scenario, const struct multiboot_info *mbi, uint64_t bytes);

/* With hold, print "READY <scenario>" and halt for good (the host takes its screenshot and
 * ends the run); otherwise return status. */
int vbe_fb_finish(const char *scenario, int hold, int status);

/* 10^6 bytes per second, and frames per second, as whole.hundredths. */
void vbe_fb_rate(uint64_t units, uint64_t cycles, uint64_t per, uint64_t *whole,
                 uint64_t *hundredths);

#endif
