/*
 * Kernel command line: space-separated tokens; "key=value" tokens are arguments, other
 * tokens (such as a leading kernel path) are ignored. scenario=<name> picks the scenario.
 */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdint.h>

#define CMDLINE_MAX 1024

void cmdline_init(const char *raw);     /* copies (and truncates) raw; NULL for none */
const char *cmdline_raw(void);
int cmdline_count(void);                /* number of key=value tokens */
const char *cmdline_get(const char *key);       /* value, or NULL if absent */

/* Parse a decimal or 0x-hex number; returns 0 on success, -1 on a malformed string. */
int parse_u64(const char *s, uint64_t *out);

/*
 * Numeric argument with default. On a malformed value prints
 * "RESULT error bad-arg scenario=S key=K value=V" and returns -1.
 */
int arg_u64(const char *scenario, const char *key, uint64_t def, uint64_t *out);

#endif
