# Tests of the attention, elementwise and sampling kernels (included from
# test/runtime/cuda/CMakeLists.txt when qopt_cuda and GoogleTest exist).
# Each test skips, saying why, on a machine without a CUDA device.
add_executable(qcuda_attention_test
  ${CMAKE_CURRENT_LIST_DIR}/PagedAttentionTest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/RowKernelsTest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/SamplingTest.cpp)
target_link_libraries(qcuda_attention_test PRIVATE qopt_cuda GTest::gtest_main)
gtest_discover_tests(qcuda_attention_test DISCOVERY_TIMEOUT 60)
