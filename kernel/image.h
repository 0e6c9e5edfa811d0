/*
 * image.h - what kind of image a file is, and its size, from its first
 * bytes: PNG, JPEG, GIF, WebP and SVG. The bytes come from the box, so
 * every read is bounded by len.
 */
#ifndef CG_IMAGE_H
#define CG_IMAGE_H

#include <stddef.h>

/*
 * Recognises the image in data[0..len). Returns its MIME type ("image/png",
 * ...) and sets *width and *height (0 when an SVG does not say), or NULL if
 * it is none of the supported kinds or is cut short.
 */
const char *image_sniff(const unsigned char *data, size_t len, unsigned *width, unsigned *height);

#endif
