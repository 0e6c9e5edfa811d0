/*
 * clock.h - the monotonic clock every program times deadlines with
 * (timeouts, idle culling, connection waits): never the wall clock, which
 * can jump.
 */
#ifndef CG_CLOCK_H
#define CG_CLOCK_H

/* Seconds on CLOCK_MONOTONIC, with nanosecond resolution. */
double clock_now(void);

#endif
