# The CUDA model executor (qopt_cuda_model): serving::ModelExecutor over the
# qopt_cuda kernels, for qrun --device cuda. Included by runtime/CMakeLists.txt
# after runtime/cuda, where both qopt_cuda and qopt_runtime (the artifact
# loader, which needs nlohmann-json) exist; the standalone runtime/cuda build
# has no loader and so no executor. Plain C++ over the kernels' host API:
# no .cu of its own, so it needs no CUDA language in this directory.
# The padding of decode steps to graph buckets: plain C++, tested on any
# machine (test/runtime/cuda/DecodeGraphsTest.cpp).
if(TARGET qopt_runtime)
  add_library(qopt_cuda_decode_steps STATIC ${CMAKE_CURRENT_LIST_DIR}/DecodeGraphs.cpp)
  target_include_directories(qopt_cuda_decode_steps PUBLIC ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(qopt_cuda_decode_steps PUBLIC qopt_runtime)
  set_target_properties(qopt_cuda_decode_steps PROPERTIES POSITION_INDEPENDENT_CODE ON)
endif()

if(TARGET qopt_cuda AND TARGET qopt_runtime)
  find_package(CUDAToolkit REQUIRED)
  add_library(qopt_cuda_model STATIC ${CMAKE_CURRENT_LIST_DIR}/CudaModelExecutor.cpp
              ${CMAKE_CURRENT_LIST_DIR}/W8A8Linear.cpp)
  target_include_directories(qopt_cuda_model PUBLIC ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(qopt_cuda_model PUBLIC qopt_cuda qopt_runtime qopt_cuda_decode_steps
                        CUDA::cudart PRIVATE CUDA::cublas)
  set_target_properties(qopt_cuda_model PROPERTIES POSITION_INDEPENDENT_CODE ON)
  # qrun loads it as a plugin (CudaBackend.h): qrun itself links no CUDA
  # library, so it starts where CUDA is not installed. Beside qrun in bin/.
  add_library(qopt_cuda_backend MODULE ${CMAKE_CURRENT_LIST_DIR}/CudaBackendPlugin.cpp)
  target_link_libraries(qopt_cuda_backend PRIVATE qopt_cuda_model)
  set_target_properties(qopt_cuda_backend PROPERTIES
    CXX_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endif()

# bench/gpu/decode_bench: decode steps of the executor (needs the loader too).
if(TARGET qopt_cuda_model)
  add_executable(decode_bench ${CMAKE_CURRENT_LIST_DIR}/../../../../bench/gpu/decode_bench.cpp)
  target_link_libraries(decode_bench PRIVATE qopt_cuda_model)
endif()
