# The doca engine's own tests, and its limits in the engine-independent
# ones. Included by tests/CMakeLists.txt (so paths are from tests/) where
# the engine is built against the DOCA emulation: after the
# engine-independent tests' runs on it (integration.<test>.doca,
# regress.<bug>.doca), with hmaf_static_doca and hmaf_test_helpers_doca
# made (cmake/HmafEngine.cmake, tests/CMakeLists.txt).

# Fewer reads in test_seqlock: the emulation's DMA costs several system
# calls each.
if(HMAF_SANITIZE OR HMAF_TSAN)
    set(hmaf_doca_reads 8000)
else()
    set(hmaf_doca_reads 40000)
endif()
set_property(TEST integration.test_seqlock.doca APPEND PROPERTY
             ENVIRONMENT HMAF_TEST_READS=${hmaf_doca_reads})
# The emulation exports at most 1024 ranges at once: 900 holds, each
# exposure a registration (an mmap) the agent ends when it gives the holds
# back.
set_property(TEST regress.close_many_holds.doca APPEND PROPERTY
             ENVIRONMENT HMAF_TEST_HOLDS=900)
set_property(TEST regress.deregister_lies.doca APPEND PROPERTY
             ENVIRONMENT HMAF_TEST_EXPOSURES=800)

# The comch channel end to end, a forked host agent dialing.
add_executable(test_comch integration/test_comch.c)
target_link_libraries(test_comch PRIVATE hmaf_static_doca)
target_include_directories(test_comch PRIVATE
    helpers ${PROJECT_SOURCE_DIR}/src)
add_test(NAME integration.comch COMMAND test_comch)
set_tests_properties(integration.comch PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 60)

# The doca engine's own limits and teardown; --wrap lets the test stall a
# dpu thread inside doca_pe_progress, and count submitted tasks.
add_executable(test_doca integration/test_doca.c)
target_link_libraries(test_doca PRIVATE hmaf_test_helpers_doca)
target_include_directories(test_doca PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_options(test_doca PRIVATE -Wl,--wrap=doca_pe_progress
                    -Wl,--wrap=doca_task_submit)
add_test(NAME integration.doca COMMAND test_doca)
set_tests_properties(integration.doca PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT HMAF_ENGINE=doca)
add_test(NAME integration.doca.timed COMMAND test_doca)
set_tests_properties(integration.doca.timed PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT "HMAF_ENGINE=doca;DOCA_EMU_TIMED=1")
# Caller buffers moved in place, under both memory-watch modes.
add_executable(test_doca_zcopy integration/test_doca_zcopy.c)
target_link_libraries(test_doca_zcopy PRIVATE hmaf_test_helpers_doca)
add_test(NAME integration.doca_zcopy COMMAND test_doca_zcopy)
add_test(NAME integration.doca_zcopy.missing COMMAND test_doca_zcopy)
set_tests_properties(integration.doca_zcopy PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT HMAF_ENGINE=doca)
set_tests_properties(integration.doca_zcopy.missing PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT "HMAF_ENGINE=doca;HMAF_MEMWATCH_WP=0")

# Many threads on one session through the doca engine's lanes.
add_executable(doca_lanes_stress regress/doca_lanes_stress.c)
target_link_libraries(doca_lanes_stress PRIVATE hmaf_test_helpers_doca)
add_test(NAME regress.doca_lanes_stress COMMAND doca_lanes_stress)
set_tests_properties(regress.doca_lanes_stress PROPERTIES
    LABELS regress SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT "HMAF_ENGINE=doca;STRESS_THREADS=8;STRESS_ROUNDS=150")
# A request on lane 0 waited for while the waiter's own lane is held.
add_executable(doca_lane_starve regress/doca_lane_starve.c)
target_link_libraries(doca_lane_starve PRIVATE hmaf_test_helpers_doca)
target_include_directories(doca_lane_starve PRIVATE
    ${PROJECT_SOURCE_DIR}/src)
target_link_options(doca_lane_starve PRIVATE
    -Wl,--wrap=doca_pe_progress)
add_test(NAME regress.doca_lane_starve COMMAND doca_lane_starve)
set_tests_properties(regress.doca_lane_starve PROPERTIES
    LABELS regress SKIP_RETURN_CODE 77 TIMEOUT 60
    ENVIRONMENT HMAF_ENGINE=doca)
# A comch server's close, its destroyed ctx watched (wrapped calls).
add_executable(comch_close_server regress/comch_close_server.c)
target_link_libraries(comch_close_server PRIVATE hmaf_test_helpers_doca)
target_include_directories(comch_close_server PRIVATE
    ${PROJECT_SOURCE_DIR}/src)
target_link_options(comch_close_server PRIVATE
    -Wl,--wrap=doca_comch_server_destroy -Wl,--wrap=doca_ctx_get_state)
add_test(NAME regress.comch_close_server COMMAND comch_close_server)
set_tests_properties(regress.comch_close_server PROPERTIES
    LABELS regress SKIP_RETURN_CODE 77 TIMEOUT 60)
# Posted transfers in flight (doca: outside any section) under
# revocations, with and without cut-offs.
add_test(NAME regress.churn_revoke_stress.posted.doca
         COMMAND churn_revoke_stress_doca 1000 posted)
add_test(NAME regress.churn_revoke_stress.posted_cutoffs.doca
         COMMAND churn_revoke_stress_doca 3 posted)
# Sparse calls, each carrying its epoch look (writes and posts too, as the
# engine enforces revocation), fenced all the same.
add_test(NAME regress.churn_revoke_stress.sparse.doca
         COMMAND churn_revoke_stress_doca 1000 sparse)
add_test(NAME regress.churn_revoke_stress.sparse_cutoffs.doca
         COMMAND churn_revoke_stress_doca 3 sparse)
add_test(NAME regress.churn_revoke_stress.posted_sparse_cutoffs.doca
         COMMAND churn_revoke_stress_doca 3 posted-sparse)
set_tests_properties(regress.churn_revoke_stress.posted.doca
                     regress.churn_revoke_stress.posted_cutoffs.doca
                     regress.churn_revoke_stress.sparse.doca
                     regress.churn_revoke_stress.sparse_cutoffs.doca
                     regress.churn_revoke_stress.posted_sparse_cutoffs.doca
                     PROPERTIES
    LABELS regress SKIP_RETURN_CODE 77 TIMEOUT 60
    ENVIRONMENT HMAF_ENGINE=doca)

# The README's demo over comch, the dpu side listening, against the
# emulation (examples/CMakeLists.txt).
add_test(NAME integration.demo.comch COMMAND hmaf-demo-doca)
set_tests_properties(integration.demo.comch PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 300
    ENVIRONMENT HMAF_DEMO_KEYS=200000)
# The benchmark on the doca engine (tools/CMakeLists.txt), and on the
# emulation's timed model (one pattern, to stay short).
add_test(NAME integration.bench_smoke.doca
         COMMAND hmaf-bench-doca --quick --engine doca --no-out)
set_tests_properties(integration.bench_smoke.doca PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120)
add_test(NAME integration.bench_smoke.doca.timed
         COMMAND hmaf-bench-doca --quick --engine doca --no-out
                 --only read-one)
set_tests_properties(integration.bench_smoke.doca.timed PROPERTIES
    ENVIRONMENT "DOCA_EMU_TIMED=1"
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120)
# Split mode, two processes, over comch (hmaf_bench_split: the script
# tests/CMakeLists.txt runs for cma).
add_test(NAME integration.bench_split.doca
         COMMAND sh ${hmaf_bench_split} $<TARGET_FILE:hmaf-bench-doca>
                 doca comch)
set_tests_properties(integration.bench_split.doca PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120)
