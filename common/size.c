/*
 * size.c - sizes and counts written by the operator (see size.h).
 */
#include "common/size.h"

#include "common/cgerr.h"

#include <ctype.h>

int
size_parse(const char *s, bool suffix, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    const char *p = s;

    if (!p || !isdigit((unsigned char)*p))
        return CG_EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CG_ETOOBIG;
        v = v * 10 + d;
    }
    if (*p && suffix) {
        switch (*p) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: return CG_EINVAL;
        }
        p++;
    }
    if (*p)
        return CG_EINVAL;
    if (v > (UINT64_MAX >> shift))
        return CG_ETOOBIG;
    *out = v << shift;
    return CG_OK;
}

bool
size_parse_positive(const char *s, uint64_t *out)
{
    uint64_t v;

    if (size_parse(s, true, &v) != CG_OK || v == 0)
        return false;
    *out = v;
    return true;
}
