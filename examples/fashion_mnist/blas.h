// PinBlasToOneThread: caps the BLAS that libtorch calls (cmake/Blas.cmake) to one thread.
//
// Why: greenfed's default BLAS is OpenBLAS's pthread build, chosen over the serial build because
// Debian builds the serial one without USE_LOCKING, and concurrent sgemm_ calls from several
// threads of one process (greenfed simulate's worker pool) returned wrong products
// (docs/benchmarks.md). At more than one thread the pthread build's idle threads spin in
// sched_yield; at one thread every call runs in the caller's thread and no pool thread wakes.
// Parallelism in greenfed comes from processes (run) or worker threads (simulate), never from
// inside the BLAS.
//
// Contract: looks up openblas_set_num_threads in the process (dlsym); with OpenBLAS loaded it
// sets one thread and returns the count before; without OpenBLAS (the reference BLAS) it does
// nothing and returns -1. Idempotent and cheap.
// Thread safety: call it before fits run concurrently (Prepare, or main).
#pragma once

namespace greenfed::fmnist {

int PinBlasToOneThread();

// The current OpenBLAS thread count, or -1 without OpenBLAS.
int BlasThreads();

}  // namespace greenfed::fmnist
