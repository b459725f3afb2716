#include "fashion_mnist/blas.h"

#include <dlfcn.h>

namespace greenfed::fmnist {
namespace {
using SetThreads = void (*)(int);
using GetThreads = int (*)();
}  // namespace

int BlasThreads() {
  void* get = dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
  if (get == nullptr) return -1;
  return reinterpret_cast<GetThreads>(get)();
}

int PinBlasToOneThread() {
  void* set = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (set == nullptr) return -1;
  const int before = BlasThreads();
  if (before != 1) reinterpret_cast<SetThreads>(set)(1);
  return before;
}

}  // namespace greenfed::fmnist
