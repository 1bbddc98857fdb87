/* The built-in bitmap font for text in pictures (core/formats/raster.h): printable ASCII, 5
 * pixels wide and 7 high, drawn for flowgrad.  Internal: not installed. */
#ifndef FG_BITMAP_FONT_H
#define FG_BITMAP_FONT_H

#include <stdint.h>

#define FG_FONT_WIDTH 5
#define FG_FONT_HEIGHT 7

/* The glyph of c as 7 rows, top first, of 5 bits each (bit 4 the leftmost pixel); '?' for a
 * character outside printable ASCII. */
const uint8_t *fg_font_glyph(char c);

#endif
