/*
 * embed.h - put a file of the source tree into the binary, byte for byte,
 * with the assembler's .incbin (paths are relative to the top of the tree,
 * where make runs). EMBED_FILE(sym, path) defines sym_start[] and
 * sym_end[]; a NUL follows the bytes so text files are C strings.
 */
#ifndef CG_EMBED_H
#define CG_EMBED_H

#define EMBED_FILE(sym, path)                                              \
    __asm__(".section .rodata\n"                                           \
            ".global " #sym "_start\n"                                     \
            ".global " #sym "_end\n" #sym "_start:\n"                      \
            ".incbin \"" path "\"\n" #sym "_end:\n"                        \
            ".byte 0\n"                                                    \
            ".previous\n");                                                \
    extern const char sym##_start[], sym##_end[]

#endif
