/*
 * history.h - the kernel's input history, answered to history_request
 * (tail, range, search) the way IPython's history manager does, kept in
 * memory for this kernel process (session number 1).
 */
#ifndef CG_HISTORY_H
#define CG_HISTORY_H

#include <jansson.h>
#include <stdbool.h>

#define HISTORY_MAX 10000 /* entries kept; the oldest are dropped */
#define HISTORY_SESSION 1

struct history;

/* An empty history, or NULL on no memory. */
struct history *history_new(void);

/* Frees the history and nulls *h. Idempotent. */
void history_destroy(struct history **h);

/* Records input (copied) as line number line, with output (text/plain of
 * the result, copied, may be NULL). */
int history_add(struct history *h, int line, const char *input, const char *output);

/*
 * Answers a history_request's content with a new JSON array of
 * [session, line, input] (or [session, line, [input, output]] when the
 * request asks for output). Unknown access types give an empty list.
 */
json_t *history_query(const struct history *h, const json_t *request);

#endif
