# Calibration (sampling, LayerwiseRunner) and GPTQ tests (engineer Q2).

# Sampling, the layer-by-layer runner against full forwards.
add_executable(calibration_test CalibrationTest.cpp)
target_link_libraries(calibration_test PRIVATE QoptQuant QoptHFImport QoptExec QoptImport
                      QoptWeights QoptQLLMDialect qopt_runtime MLIRFuncDialect MLIRIR
                      GTest::gtest GTest::gtest_main)
target_compile_definitions(calibration_test PRIVATE QOPT_SHARED_DIR="${QOPT_SHARED_DIR}")
gtest_discover_tests(calibration_test TEST_PREFIX "calibration_test." DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 600)

# GPTQ on single linears: against a plain OBS re-implementation and RTN.
add_executable(gptq_test GPTQTest.cpp)
target_link_libraries(gptq_test PRIVATE QoptQuant GTest::gtest GTest::gtest_main)
gtest_discover_tests(gptq_test TEST_PREFIX "gptq_test." DISCOVERY_TIMEOUT 60)

# The qopt-gptq pass on random decoders and the issue's bar on austen-llama-7m.
add_executable(gptq_pass_test GPTQPassTest.cpp)
target_link_libraries(gptq_pass_test PRIVATE QoptQuant QoptHFImport QoptExec QoptImport
                      QoptWeights QoptQLLMDialect qopt_runtime MLIRFuncDialect MLIRPass MLIRIR
                      GTest::gtest GTest::gtest_main)
target_compile_definitions(gptq_pass_test PRIVATE QOPT_SHARED_DIR="${QOPT_SHARED_DIR}")
gtest_discover_tests(gptq_pass_test TEST_PREFIX "gptq_pass_test." DISCOVERY_TIMEOUT 60
                     PROPERTIES TIMEOUT 900)

# A model and text the issue does not name, through the driver.
if(Python3_FOUND AND TARGET qopt)
  add_test(NAME gptq_stories260k_vs_rtn
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_gptq_stories.py
                   --qopt $<TARGET_FILE:qopt> --shared ${QOPT_SHARED_DIR})
  set_tests_properties(gptq_stories260k_vs_rtn PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
endif()
