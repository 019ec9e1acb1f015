/* OpenMP for the C kernels of layers/csrc: the calling thread's slot for its partial sums. Kernels split their
 * rows with `#pragma omp` (inside PyTorch the process's libgomp, so the threads are PyTorch's own); built without
 * OpenMP the pragmas are ignored and everything runs in slot 0. Included by the kernels; layers/ckernel.py hashes
 * it into every kernel's build key. */
#ifndef CROSSALIGN_THREADS_H
#define CROSSALIGN_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

/* the calling OpenMP thread's number inside a parallel region, 0 without OpenMP */
static inline int thread_slot(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#endif
