/*
 * size.h - the sizes and counts an operator writes in flags and
 * environment variables: "1048576", "64K", "32M", "2G", "1T" (binary
 * suffixes, either case). One strict reader for every program, so
 * CELLGATE_MEMORY, CELLGATE_OUTPUT_LIMIT and CELLGATE_REGISTRY_MAX_BYTES
 * accept exactly the same forms.
 */
#ifndef CG_SIZE_H
#define CG_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Reads s: decimal digits only (no sign, space, fraction or hex), then,
 * when suffix is true, at most one of K, M, G, T. Returns CG_OK with *out
 * set, CG_EINVAL for anything else, or CG_ETOOBIG when the value does not
 * fit 64 bits. 0 is a valid value: callers that need more check.
 */
int size_parse(const char *s, bool suffix, uint64_t *out);

/* A byte bound that must be above 0 (an artifact or download limit): s as
 * size_parse reads it with a suffix; true with *out set, else false and
 * *out untouched. */
bool size_parse_positive(const char *s, uint64_t *out);

#endif
