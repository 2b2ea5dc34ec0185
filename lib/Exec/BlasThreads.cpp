//===- BlasThreads.cpp - BLAS thread count, when the BLAS has one ----===//
//
// The thread-count calls are OpenBLAS extensions. They are declared weak
// here (without cblas.h, which declares them strong) so that linking
// against another BLAS still works; the calls then do nothing.
//
//===----------------------------------------------------------------------===//
#include "Kernels.h"

extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}

namespace qopt::exec {

void setBlasThreads(int threads) {
  if (openblas_set_num_threads && threads > 0)
    openblas_set_num_threads(threads);
}

int getBlasThreads() {
  return openblas_get_num_threads ? openblas_get_num_threads() : 1;
}

} // namespace qopt::exec
