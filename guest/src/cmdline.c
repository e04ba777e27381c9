#include "cmdline.h"
#include "kit.h"

#define MAX_ARGS 32

static char raw_copy[CMDLINE_MAX];
static char split[CMDLINE_MAX];         /* raw_copy with NULs in place of ' ' and '=' */
static const char *keys[MAX_ARGS], *values[MAX_ARGS];
static int nargs;

void cmdline_init(const char *raw)
{
    size_t n = 0;
    if (raw)
        while (raw[n] && n < CMDLINE_MAX - 1) {
            raw_copy[n] = raw[n];
            n++;
        }
    raw_copy[n] = '\0';
    memcpy(split, raw_copy, n + 1);

    nargs = 0;
    char *p = split;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            *p++ = '\0';
        if (!*p)
            break;
        char *tok = p, *eq = NULL;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '=' && !eq)
                eq = p;
            p++;
        }
        if (eq && eq != tok && nargs < MAX_ARGS) {
            *eq = '\0';
            keys[nargs] = tok;
            values[nargs] = eq + 1;   /* ends at the NUL written when p moves on */
            nargs++;
        }
    }
}

const char *cmdline_raw(void) { return raw_copy; }

int cmdline_count(void) { return nargs; }

const char *cmdline_get(const char *key)
{
    const char *found = NULL;
    for (int i = 0; i < nargs; i++)
        if (strcmp(keys[i], key) == 0)
            found = values[i];              /* the last one wins */
    return found;
}

int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return -1;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned)(*s - 'A' + 10);
        else
            return -1;
        if (v > (UINT64_MAX - d) / base)
            return -1;                      /* overflow */
        v = v * base + d;
    }
    *out = v;
    return 0;
}

int arg_u64(const char *scenario, const char *key, uint64_t def, uint64_t *out)
{
    const char *s = cmdline_get(key);
    if (!s) {
        *out = def;
        return 0;
    }
    if (parse_u64(s, out) == 0)
        return 0;
    kprintf("RESULT error bad-arg scenario=%s key=%s value=%s\n", scenario, key, s);
    return -1;
}
