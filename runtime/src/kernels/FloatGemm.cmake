# fp32/bf16-weight GEMV/GEMM (FloatGemm.h), included by Kernels.cmake. Same
# scheme as the quantized kernels: the SIMD files get their instruction set
# flags here and only here; FloatGemm.cpp picks one at run time.
target_sources(qopt_runtime PRIVATE
  src/kernels/FloatGemm.cpp
  src/kernels/FloatGemmScalar.cpp)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND
   CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_sources(qopt_runtime PRIVATE
    src/kernels/FloatGemmAvx2.cpp
    src/kernels/FloatGemmAvx512.cpp)
  set_source_files_properties(src/kernels/FloatGemmAvx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma")
  set_source_files_properties(src/kernels/FloatGemmAvx512.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mfma")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12's AVX-512 headers (_mm512_*/_mm256_undefined_*, GCC bug
    # 105593) warn from inside the intrinsics; nothing in our code.
    set_property(SOURCE src/kernels/FloatGemmAvx512.cpp
                 APPEND PROPERTY COMPILE_OPTIONS "-Wno-maybe-uninitialized;-Wno-uninitialized")
  endif()
  set_source_files_properties(src/kernels/FloatGemm.cpp PROPERTIES
    COMPILE_DEFINITIONS "QRT_KERNELS_X86=1")
endif()
