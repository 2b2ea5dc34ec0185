# AWQ, SmoothQuant W8A8 and KV-cache scales (and the executor's activation
# and KV-cache rounding they rely on).
add_executable(awq_test AWQTest.cpp FakeQuantTest.cpp)
add_dependencies(awq_test QoptQuantPassIncGen)
target_include_directories(awq_test PRIVATE ${PROJECT_SOURCE_DIR}/lib/Exec
                           ${PROJECT_SOURCE_DIR}/test/Exec)
target_link_libraries(awq_test PRIVATE QoptQuant QoptExec QoptImport QoptWeights
                      QoptQLLMDialect qopt_runtime MLIRFuncDialect MLIRPass MLIRIR
                      GTest::gtest GTest::gtest_main)
gtest_discover_tests(awq_test TEST_PREFIX "awq_test." DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 600)

# On ../shared's models (skipped when absent): float equivalence of the
# folds on austen-llama-7m, the AWQ-vs-RTN bar, W8A8 and KV-cache quality.
add_executable(awq_shared_test AWQSharedTest.cpp)
add_dependencies(awq_shared_test QoptQuantPassIncGen)
target_include_directories(awq_shared_test PRIVATE ${PROJECT_SOURCE_DIR}/test/Exec)
target_link_libraries(awq_shared_test PRIVATE QoptQuant QoptHFImport QoptExec QoptImport
                      QoptWeights QoptQLLMDialect qopt_runtime MLIRFuncDialect MLIRPass MLIRIR
                      GTest::gtest GTest::gtest_main)
target_compile_definitions(awq_shared_test PRIVATE QOPT_SHARED_DIR="${QOPT_SHARED_DIR}")
gtest_discover_tests(awq_shared_test TEST_PREFIX "awq_shared_test." DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 1200)
