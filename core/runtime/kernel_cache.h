/* Internal to core/runtime/: the kernel choices a program's compilation timed (kernel_choice.c),
 * kept in a file so that every later process on the machine makes the same choices.  Results of
 * different implementations differ in the last bits, so without it two runs of one training (or
 * a run and its resume in a new process) could compute with different kernels.
 *
 * The file is <dir>/kernels-<fingerprint>.txt, dir from FG_KERNEL_CACHE (a directory; empty, "off"
 * or "0": no file), else $XDG_CACHE_HOME/flowgrad, else $HOME/.cache/flowgrad. The fingerprint
 * hashes the CPU model, the kernel libraries with the code paths they chose (oneDNN's ISA,
 * OpenBLAS's core), the settings that steer the native kernels (FG_CONV_ISA, FG_CONV_PATH,
 * FG_MATH_ISA, FG_NO_BLAS) and each op's implementations, so a file made by another build, CPU
 * or setting is never read. A line is "<key in hex> <implementation index>" (-1:
 * native); lines are appended with one write each, so processes choosing at the same time only
 * ever add whole lines, and a key's first line wins. A file that cannot be read or written only
 * costs timing again: nothing here fails. */
#ifndef FG_KERNEL_CACHE_H
#define FG_KERNEL_CACHE_H

#include <stdbool.h>
#include <stddef.h>

/* Calls add(key, len, impl) for every line of the file that parses. */
void fg__kernel_cache_load(void (*add)(const unsigned char *key, size_t len, int impl));
/* Appends one choice. */
void fg__kernel_cache_store(const unsigned char *key, size_t len, int impl);
/* The file's path into buf (for tests and messages); false when there is to be none. */
bool fg__kernel_cache_path(char *buf, size_t cap);

#endif
