# CPU weight-quantized GEMV/GEMM kernels (included by runtime/CMakeLists.txt
# after qopt_runtime is defined). The per-ISA files get their instruction
# set flags here and only there; the dispatcher picks one at run time, so
# the library itself still runs on any x86-64 (or other) CPU.
find_package(Threads REQUIRED)
target_sources(qopt_runtime PRIVATE
  src/kernels/Isa.cpp
  src/kernels/PackedLayout.cpp
  src/kernels/QGemm.cpp
  src/kernels/Specialized.cpp
  src/kernels/KernelsScalar.cpp
  src/kernels/ThreadPool.cpp)
# Specialized.cpp loads the kernel library an artifact carries.
target_link_libraries(qopt_runtime PUBLIC Threads::Threads ${CMAKE_DL_LIBS})

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND
   CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_sources(qopt_runtime PRIVATE
    src/kernels/KernelsAvx2.cpp
    src/kernels/KernelsAvx512.cpp
    src/kernels/KernelsAvx512Vnni.cpp)
  set_source_files_properties(src/kernels/KernelsAvx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(src/kernels/KernelsAvx512.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mfma;-mf16c")
  set_source_files_properties(src/kernels/KernelsAvx512Vnni.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni;-mfma;-mf16c")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12's own AVX-512 headers trip -Wmaybe-uninitialized through
    # _mm512_undefined_* (GCC bug 105593); nothing in our code.
    set_property(SOURCE src/kernels/KernelsAvx512.cpp src/kernels/KernelsAvx512Vnni.cpp
                 APPEND PROPERTY COMPILE_OPTIONS "-Wno-maybe-uninitialized")
  endif()
  set_source_files_properties(src/kernels/Isa.cpp src/kernels/QGemm.cpp PROPERTIES
    COMPILE_DEFINITIONS "QRT_KERNELS_X86=1")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/FloatGemm.cmake)
