/* State kept between calls and per thread: the work buffers (per calling thread, grow-only), the OpenMP thread
 * number, the schedule of the NCHW run loops, and the rule for when a unit of work goes whole to one thread. */
#ifndef GN_SCRATCH_AND_THREADS_H
#define GN_SCRATCH_AND_THREADS_H

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "activations.h"
#include "common.h"

/* Work buffers are kept per calling thread, by slot, and only grow: a fresh malloc of a few hundred KiB per call is
 * an mmap whose pages the kernel zeroes on first touch, which cost more than the kernels' own work on mid-sized
 * tensors. Slots below HALF_SLOT0 belong to the float32 kernels (a call needs up to three buffers at once), the
 * rest to the float16/bfloat16 paths, which call the float32 kernels while they hold their own. */
#define SCRATCH_SLOTS 9
#define HALF_SLOT0 3
static __thread void *scratch_buf[SCRATCH_SLOTS];
static __thread size_t scratch_size[SCRATCH_SLOTS];

/* slot's buffer, at least bytes long (NULL when it cannot be had) */
static void *scratch(int slot, size_t bytes) {
    if (bytes > scratch_size[slot]) {
        free(scratch_buf[slot]);
        scratch_buf[slot] = malloc(bytes);
        scratch_size[slot] = scratch_buf[slot] ? bytes : 0;
    }
    return scratch_buf[slot];
}

/* frees the buffers of slots first.. that are larger than keep_bytes */
static void release_scratch(int first, size_t keep_bytes) {
    for (int i = first; i < SCRATCH_SLOTS; i++)
        if (scratch_size[i] > keep_bytes) free(scratch_buf[i]), scratch_buf[i] = NULL, scratch_size[i] = 0;
}

/* the calling thread's number in the current parallel region (0 without OpenMP) */
static inline int thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Whether units (NCHW groups, channels_last samples) go whole to one thread each: statistics, then the apply
 * pass right away while the unit is still in L2 or, up to a thread's share of a wave, in L3 (against the split
 * path: see kernel-choice.md, section "Whole units per thread"). */
static int fused_ok(i64 units, i64 unit_bytes, int nthreads, i64 wave_bytes) {
    return unit_bytes <= imax(FUSED_BYTES, wave_bytes / nthreads) && units >= 2 * (i64)nthreads;
}

/* The NCHW run loops take their schedule at run time: contiguous ranges per thread for the plain epilogue, which
 * is bound by memory and gains from each thread reading sequentially, runs handed out one by one with an
 * activation, which is bound by arithmetic and gains from the balancing (see kernel-choice.md, section "Schedule
 * of the NCHW runs"). The caller's schedule is restored afterwards. */
typedef struct {
    int kind, chunk; /* an omp_sched_t and its chunk size */
} SavedSchedule;

static SavedSchedule set_run_schedule(int act) {
    SavedSchedule saved = {0, 0};
#ifdef _OPENMP
    omp_sched_t kind;
    omp_get_schedule(&kind, &saved.chunk);
    saved.kind = (int)kind;
    omp_set_schedule(act == ACT_NONE ? omp_sched_static : omp_sched_dynamic, act == ACT_NONE ? 0 : 1);
#else
    (void)act;
#endif
    return saved;
}

static void restore_schedule(SavedSchedule saved) {
#ifdef _OPENMP
    omp_set_schedule((omp_sched_t)saved.kind, saved.chunk);
#else
    (void)saved;
#endif
}

#endif
