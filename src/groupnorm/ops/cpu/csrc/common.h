/* What every part of the library uses: the index type, integer helpers, the always-inline marker, and the block
 * and work sizes. Block sizes depend only on the shape, never on the thread count: that is what makes every
 * result the same bits for any number of threads. */
#ifndef GN_COMMON_H
#define GN_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t i64;

static inline i64 imin(i64 a, i64 b) { return a < b ? a : b; }
static inline i64 imax(i64 a, i64 b) { return a > b ? a : b; }
static inline i64 cdiv(i64 a, i64 b) { return (a + b - 1) / b; }

/* Loops written once as always-inline functions whose flags (activation, residual present, which outputs are
 * wanted) are compile-time constants at each call site of their dispatchers: a run-time "res ? res[i] : 0" or
 * "if (dx)" inside the loop would stop gcc from vectorizing it. */
#define GN_INLINE static inline __attribute__((always_inline))

/* For the row loops that the float16/bfloat16 paths call with constant arguments (no streaming stores, rows from
 * 0): gcc would specialize a copy for those calls, and the original, then one of two callers of its helpers, would
 * no longer have them inlined (apply_row into apply_range, for one). */
#define GN_NOCLONE __attribute__((noclone))

#define NCHW_BLOCK 2048 /* elements per statistics block, NCHW: 8 KiB stays in L1 for the second pass */
/* elements per statistics block, channels_last (whole pixels, at least CHANNELS_LAST_MIN_PIX): 64 KiB,
 * L2-resident for the second pass, and half the partial sums of 8192 (see kernel-choice.md, section
 * "channels_last statistics blocks") */
#define CHANNELS_LAST_BLOCK 16384
#define CHANNELS_LAST_MIN_PIX 16 /* each block writes 2 C partial results: keep that a small share of the block */
#define APPLY_PIECE 16384        /* elements per apply work item */
#define FOLD_CHUNK 64            /* channels per fold work item */

/* A group (NCHW) or a sample (channels_last) of at most FUSED_BYTES (half of a 1 MiB L2), or of a thread's share of
 * a wave if that is more, is done start to end by one thread (see fused_ok): x comes from DRAM once, and there is
 * no barrier a descheduled thread could hold up on a busy machine. */
#define FUSED_BYTES (512 << 10)
/* Consecutive small units (NCHW groups) handed to one thread together, in input bytes: a quarter of L2, so the
 * run's x (and y, when written back) stay in L2 between its statistics and its apply pass. */
#define RUN_BYTES (256 << 10)

#endif
