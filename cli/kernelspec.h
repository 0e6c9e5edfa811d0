/*
 * kernelspec.h - `cellgate install`: writes one kernelspec per available
 * language (cellgate-<name>) plus `cellgate` (Python with %%magics), all
 * generated from the language table.
 */
#ifndef CG_KERNELSPEC_H
#define CG_KERNELSPEC_H

#include <stddef.h>

/*
 * Writes kernelspecs under prefix_dir/share/jupyter/kernels, or straight
 * into kernels_dir when prefix_dir is NULL. exe is the absolute path of the
 * cellgate binary to put in argv. Prints one line per kernelspec to stdout.
 * Returns CG_OK or an error with err filled.
 */
int kernelspec_install(const char *kernels_dir, const char *exe, char *err, size_t errlen);

#endif
