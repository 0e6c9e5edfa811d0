/*
 * doctor.h - `cellgate doctor`: what this machine offers cellgate.
 */
#ifndef CG_DOCTOR_H
#define CG_DOCTOR_H

/* Prints languages (with versions), sandbox features and library versions
 * to stdout. Returns 0 if at least one language is available, else 1. */
int doctor_run(void);

#endif
