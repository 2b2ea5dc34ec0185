# Tests of the attention, elementwise and sampling kernels (included from
# test/runtime/cuda/CMakeLists.txt when qopt_cuda and GoogleTest exist).
# Each test skips, saying why, on a machine without a CUDA device.
add_executable(qcuda_attention_test
  ${CMAKE_CURRENT_LIST_DIR}/PagedAttentionTest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/RowKernelsTest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/SamplingTest.cpp)
target_link_libraries(qcuda_attention_test PRIVATE qopt_cuda GTest::gtest_main)
gtest_discover_tests(qcuda_attention_test DISCOVERY_TIMEOUT 60)

# The tensor-core prefill kernel's fragment and address math replayed lane
# by lane in Python (no GPU needed); exit 77 (no numpy) is a skip.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_FOUND)
  add_test(NAME qcuda_prefill_mma_emulation
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/prefill_mma_emulation.py)
  set_tests_properties(qcuda_prefill_mma_emulation PROPERTIES SKIP_RETURN_CODE 77)
endif()
