/* version.h - cellgate's version, shown by --version and kernel_info. */
#ifndef CG_VERSION_H
#define CG_VERSION_H
#define CELLGATE_VERSION "0.1.0"
#endif
