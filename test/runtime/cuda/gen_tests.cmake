# Generated CUDA kernels (qopt-cuda/GenLibrary.h): qcuda_gen_fixture (a
# library shaped like qopt's output, GenFixture.cu) is defined in
# runtime/cuda/CMakeLists.txt, where the CUDA language is enabled, and
# loaded by the test as the runtime loads an artifact's kernels/sm_XX.so.

add_executable(qcuda_gen_test GenLibraryTest.cpp)
target_link_libraries(qcuda_gen_test PRIVATE qopt_cuda GTest::gtest_main)
target_compile_definitions(qcuda_gen_test PRIVATE
  QCUDA_GEN_FIXTURE="$<TARGET_FILE:qcuda_gen_fixture>")
add_dependencies(qcuda_gen_test qcuda_gen_fixture)
gtest_discover_tests(qcuda_gen_test DISCOVERY_TIMEOUT 60)
