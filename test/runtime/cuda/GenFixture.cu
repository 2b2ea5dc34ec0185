//===- GenFixture.cu - a library shaped like qopt's generated CUDA code --===//
//
// What `qopt -target=smXX` emits (lib/CodeGen/KernelLibrary.cpp, CUDA
// flavour), written out for the shapes of GenLibraryTest so the test runs
// where qopt cannot be built (the GPU machine has no MLIR). Built for every
// architecture of the build with QCUDA_GEN_CC=0 ("any"). The compiler's own
// output is loaded by test/CodeGen/KernelLibraryTest.cpp.
//
//===----------------------------------------------------------------------===//
#include "qopt-cuda/gen/Specialize.cuh"

extern "C" __attribute__((visibility("default"))) void
qopt_cuda_gen_register(qcuda::gen::GenRegistry *r) {
  qcuda::gen::begin(r);
  qcuda::gen::add<4, 128, 0, 192, 320>(r); // g128, a partial last group
  qcuda::gen::add<4, 64, 1, 320, 576>(r);  // g64 symmetric
  qcuda::gen::add<4, 32, 0, 576, 192>(r);  // g32
  qcuda::gen::add<8, 192, 1, 576, 192>(r); // int8 per-channel (group = cols)
  qcuda::gen::add<8, 128, 0, 192, 320>(r); // int8 g128 asymmetric
}
