/* SPDX-License-Identifier: MIT */
/* The ELF symbol-table reader the symbolizer falls back to (src/diag/elfsym.c): a module's
 * function symbols, sorted once, searched by address. Internal to src/diag/symbol.c. */
#ifndef TT_DIAG_ELFSYM_H
#define TT_DIAG_ELFSYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A module's FUNC and IFUNC symbols (from .symtab, or .dynsym when there is no .symtab), sorted
 * by address, with the names they need and nothing else of the file. Immutable once built. */
typedef struct tt__elfsym tt__elfsym;

/* The largest build ID kept (GNU build IDs are 20 bytes; some linkers write 16 or 32). */
#define TT__BUILD_ID_MAX 64

/* Reads the symbol tables of the ELF file open on fd (not closed). When id_len > 0 and the file
 * carries a build ID, the two must match: a file replaced since it was loaded is rejected rather
 * than believed. Returns NULL when the file cannot be read, is not a 64-bit ELF file of this
 * machine's byte order, does not match, or has no function symbols. Reads with pread, never
 * maps, so a file truncated under us cannot raise SIGBUS. */
tt__elfsym *tt__elfsym_load(int fd, const uint8_t *id, size_t id_len);
void tt__elfsym_free(tt__elfsym *t);
size_t tt__elfsym_count(const tt__elfsym *t);

/* The function symbol containing the link-time address vaddr (size-aware: an address past a
 * symbol's st_size is not that symbol; a symbol without a size extends to the next symbol or the
 * end of its section), its name (valid until tt__elfsym_free) and *start its st_value; NULL when
 * no symbol contains vaddr. */
const char *tt__elfsym_find(const tt__elfsym *t, uintptr_t vaddr, uintptr_t *start);

/* Whether the file open on fd carries the build ID id (true when either side has none: nothing to
 * compare). */
bool tt__elf_build_id_matches(int fd, const uint8_t *id, size_t id_len);

/* Finds an NT_GNU_BUILD_ID note in the n bytes of notes at p; copies it to out (at most
 * TT__BUILD_ID_MAX bytes) and returns its length, or 0. */
size_t tt__elf_note_build_id(const void *p, size_t n, uint8_t *out);

#endif
