# The ucx engine's limits in the engine-independent tests. Included by
# tests/CMakeLists.txt (paths are from tests/) after their runs on it.
#
# Without RDMA every transfer is a round trip through the host's agent
# (UCX's emulated gets and puts), and each registration several: the tests
# that count in hundreds of thousands of registrations or reads run fewer —
# the same code, in seconds instead of minutes.
set_property(TEST regress.close_many_holds.ucx APPEND PROPERTY
             ENVIRONMENT HMAF_TEST_HOLDS=500)
set_property(TEST regress.deregister_lies.ucx APPEND PROPERTY
             ENVIRONMENT HMAF_TEST_EXPOSURES=200)
set_property(TEST integration.test_seqlock.ucx APPEND PROPERTY
             ENVIRONMENT HMAF_TEST_READS=5000)
