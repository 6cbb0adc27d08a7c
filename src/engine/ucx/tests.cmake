# The ucx engine's limits in the engine-independent tests. Included by
# tests/CMakeLists.txt (paths are from tests/) after their runs on it.
#
# Without RDMA every transfer is a round trip through the host's agent
# (UCX's emulated gets and puts), and each registration several: the tests
# that count in hundreds of thousands of registrations or reads run fewer —
# the same code, in seconds instead of minutes.
# (Under TSan they do not run on ucx at all: SKIP_TESTS in CMakeLists.txt.)
foreach(limit "regress.close_many_holds.ucx HMAF_TEST_HOLDS=500"
              "regress.deregister_lies.ucx HMAF_TEST_EXPOSURES=200"
              "integration.test_seqlock.ucx HMAF_TEST_READS=5000"
              "integration.test_alloc_hostile.ucx HMAF_TEST_THREADS=32")
    separate_arguments(limit)
    list(GET limit 0 test)
    list(GET limit 1 env)
    if(TEST ${test})
        set_property(TEST ${test} APPEND PROPERTY ENVIRONMENT ${env})
    endif()
endforeach()

# The benchmark against raw ucp calls on the engine's transport
# (docs/benchmarks.md, "--engine ucx"); its outputs are checked as on cma
# (tests/integration/bench_smoke.sh), its figures not judged.
add_test(NAME integration.bench_smoke.ucx
         COMMAND sh ${PROJECT_SOURCE_DIR}/tests/integration/bench_smoke.sh
                 $<TARGET_FILE:hmaf-bench> ucx)
set_tests_properties(integration.bench_smoke.ucx PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 180)
# The same across two network namespaces, over tcp on a veth pair: the
# forked host enters the host's namespace (--host-netns). Needs root.
add_test(NAME integration.netns.ucx.bench_smoke
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/integration/netns_run.sh ucx
                 sh -c "exec \"$0\" --quick --engine ucx --no-out --only read-one --host-netns \"$HMAF_TEST_HOST_NETNS\""
                 $<TARGET_FILE:hmaf-bench>)
set_tests_properties(integration.netns.ucx.bench_smoke PROPERTIES
    LABELS integration SKIP_RETURN_CODE 77 TIMEOUT 120)

# The host against a lying dpu side: requests outside a registration,
# with a forged or dead key, to a read-only one, malformed ones with raw
# ucp calls; each refused, nothing moved, the host alive.
hmaf_engine_program(ucx_hostile_exe ucx ucx_hostile engine/ucx_hostile.c)
target_link_libraries(${ucx_hostile_exe} PRIVATE PkgConfig::HMAF_ENGINE_UCX_DEPS)
add_test(NAME engine.ucx.hostile COMMAND ${ucx_hostile_exe})
set_tests_properties(engine.ucx.hostile PROPERTIES
    LABELS engine SKIP_RETURN_CODE 77 TIMEOUT 60)

# Setting up: HMAF_UCX_PORT pins the host's listener; a child forked
# beside a live UCX worker is refused at once, one forked when none lived
# connects.
hmaf_engine_program(ucx_setup_exe ucx ucx_setup engine/ucx_setup.c)
add_test(NAME engine.ucx.setup COMMAND ${ucx_setup_exe})
set_tests_properties(engine.ucx.setup PROPERTIES
    LABELS engine SKIP_RETURN_CODE 77 TIMEOUT 90)

# The host against raw peers that hold its resources: small requests
# whose answers are never taken, sessions that end with replies unsent,
# more connections than it takes; its memory and fds stay bounded, and it
# serves on.
hmaf_engine_program(ucx_limits_exe ucx ucx_limits engine/ucx_limits.c)
target_link_libraries(${ucx_limits_exe} PRIVATE PkgConfig::HMAF_ENGINE_UCX_DEPS)
add_test(NAME engine.ucx.limits COMMAND ${ucx_limits_exe})
set_tests_properties(engine.ucx.limits PROPERTIES
    LABELS engine SKIP_RETURN_CODE 77 TIMEOUT 240)
