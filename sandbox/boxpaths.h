/*
 * boxpaths.h - the box as code inside it sees it, the facts both sides
 * build on: the user code runs as, its home, and where cellgate's helpers
 * live. Init (boxinit.c) lays the box out by these; the kernel (box.h)
 * starts processes and serves cellgate-display by them.
 */
#ifndef CG_BOXPATHS_H
#define CG_BOXPATHS_H

#define BOX_UID 1000           /* the user code runs as, inside */
#define BOX_HOME "/mnt/data"   /* its home and working directory */
/* Where the box offers the display command (this very binary, bound
 * read-only: it runs as cellgate-display) and the socket it talks to. */
#define BOX_BIN_DIR "/run/cellgate/bin"
#define BOX_DISPLAY_SOCKET "/run/cellgate/display.sock"
/* Where package managers in the box reach the registry gateway: a port on
 * the box's own loopback, taken by init before any code runs. */
#define BOX_REGISTRY_PORT 3141
#define BOX_REGISTRY_URL "http://127.0.0.1:3141"

#endif
