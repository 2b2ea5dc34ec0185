# Row kernels (RMSNorm, SwiGLU, embedding) and device sampling (included by
# runtime/cuda/CMakeLists.txt, paths relative to runtime/cuda).
list(APPEND QOPT_CUDA_SOURCES
  src/elementwise/RowKernels.cu
  src/elementwise/Sampling.cu
)
