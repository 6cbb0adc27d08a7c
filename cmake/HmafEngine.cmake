# Engines: how one declares itself, and what the build and the tests learn
# from the declarations (docs/engines.md, "Adding an engine").
#
# src/engine/CMakeLists.txt holds the one list of engines (HMAF_ENGINES, in
# auto-selection order) and adds each one's folder, whose CMakeLists.txt
# calls hmaf_add_engine(); then hmaf_engines_finish() generates the
# registry's table (engine/engine_list.h) and the test-only libraries.
# tests/CMakeLists.txt runs the conformance suite on every built engine
# and the engine-independent tests on every other engine whose tests run
# here (hmaf_engines_tested).
#
# What is recorded, per engine <name> (global properties):
#   HMAF_ENGINE_<NAME>_MODE     LIB: in libhmaf; EMULATED: in the test-only
#                               hmaf_static_<name> only; empty: not built
#   HMAF_ENGINE_<NAME>_SOURCES, _DEFINITIONS, _LIBRARIES, _EMULATION,
#   HMAF_ENGINE_<NAME>_TEST_ENV, _TESTS, _SKIP_TESTS, _NETNS,
#   _VARIANTS (hmaf_engine_variant)

# hmaf_add_engine(<name>
#     SOURCES <file>...         its sources, from its folder (or absolute)
#     [PKG_CONFIG <module>...]  its dependency: built only where pkg-config
#                               finds every module (versions as pkg-config
#                               takes them: doca-dma>=2.8); linked with them
#     [DEFINITIONS <def>...]    compile definitions of the library it joins
#     [LIBRARIES <lib>...]      more libraries it needs
#     [EMULATION <target>]      without the dependency, built for tests only
#                               (with HMAF_BUILD_TESTS): libhmaf's sources
#                               plus the engine, linked with <target>
#                               instead, as the library hmaf_static_<name>
#     [TEST_ENV <VAR=value>...] environment of its test runs, besides
#                               HMAF_ENGINE=<name>
#     [TESTS <file>]            its own tests: a CMake file included by
#                               tests/CMakeLists.txt wherever its
#                               engine-independent tests run
#     [SKIP_TESTS <regex>...]   engine-independent tests not run on it,
#                               matched against <label>.<name>
#                               (integration.test_rw): say why beside it
#     [NETNS])                  it crosses machines: its conformance suite
#                               and some integration tests run again with
#                               host and dpu side in two network namespaces
#                               (tests/integration/netns_run.sh)
#
# Where it is built, its code is compiled with HMAF_HAVE_ENGINE_<NAME> (the
# registry's table lists it then) and HMAF_ENGINE_<NAME>_IN_LIB (cache)
# says whether libhmaf has it. An engine with an EMULATION runs the
# engine-independent tests against the emulation only: with the real
# dependency they would need its hardware, which the conformance suite
# (engine.<name>) looks for and skips without.
function(hmaf_add_engine name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "NETNS" "EMULATION;TESTS"
        "SOURCES;PKG_CONFIG;DEFINITIONS;LIBRARIES;TEST_ENV;SKIP_TESTS")
    string(TOUPPER ${name} upper)
    get_property(listed GLOBAL PROPERTY HMAF_ENGINE_LIST)
    if(NOT name IN_LIST listed)
        message(FATAL_ERROR "hmaf: engine ${name} is not in HMAF_ENGINES "
                            "(src/engine/CMakeLists.txt)")
    endif()
    if(NOT arg_SOURCES)
        message(FATAL_ERROR "hmaf: engine ${name} declares no SOURCES")
    endif()
    set(found TRUE)
    if(arg_PKG_CONFIG)
        _hmaf_engine_pkg_config(found ${upper} ${arg_PKG_CONFIG})
        if(found)
            list(APPEND arg_LIBRARIES PkgConfig::HMAF_ENGINE_${upper}_DEPS)
        endif()
    endif()
    set(sources)
    foreach(src IN LISTS arg_SOURCES)
        if(NOT IS_ABSOLUTE ${src})
            set(src ${CMAKE_CURRENT_SOURCE_DIR}/${src})
        endif()
        list(APPEND sources ${src})
    endforeach()
    set(definitions HMAF_HAVE_ENGINE_${upper} ${arg_DEFINITIONS})
    if(arg_TESTS AND NOT IS_ABSOLUTE ${arg_TESTS})
        set(arg_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/${arg_TESTS})
    endif()

    if(found)
        set(mode LIB)
        message(STATUS "hmaf: ${name} engine built into libhmaf")
        target_sources(hmaf_objects PRIVATE ${sources})
        target_compile_definitions(hmaf_objects PRIVATE ${definitions})
        foreach(lib hmaf_objects hmaf hmaf_static)
            target_link_libraries(${lib} PUBLIC ${arg_LIBRARIES})
        endforeach()
        # What the installed package needs found again (HmafPackage.cmake).
        if(arg_PKG_CONFIG)
            set_property(GLOBAL APPEND PROPERTY HMAF_PACKAGE_PKG_CONFIG
                         "${upper}|${arg_PKG_CONFIG}")
        endif()
    elseif(arg_EMULATION AND HMAF_BUILD_TESTS)
        set(mode EMULATED)
        message(STATUS "hmaf: ${name} engine built for tests only, "
                       "against ${arg_EMULATION} (hmaf_static_${name})")
        list(APPEND arg_LIBRARIES ${arg_EMULATION})
    else()
        set(mode "")
        message(STATUS "hmaf: ${name} engine not built")
    endif()
    set(HMAF_ENGINE_${upper}_IN_LIB ${found} CACHE INTERNAL
        "${name} engine is in libhmaf")
    if(mode)
        set_property(GLOBAL APPEND PROPERTY HMAF_ENGINES_BUILT ${name})
    endif()
    set(prefix HMAF_ENGINE_${upper})
    set_property(GLOBAL PROPERTY ${prefix}_MODE "${mode}")
    set_property(GLOBAL PROPERTY ${prefix}_SOURCES "${sources}")
    set_property(GLOBAL PROPERTY ${prefix}_DEFINITIONS "${definitions}")
    set_property(GLOBAL PROPERTY ${prefix}_LIBRARIES "${arg_LIBRARIES}")
    set_property(GLOBAL PROPERTY ${prefix}_EMULATION "${arg_EMULATION}")
    set_property(GLOBAL PROPERTY ${prefix}_TEST_ENV "${arg_TEST_ENV}")
    set_property(GLOBAL PROPERTY ${prefix}_TESTS "${arg_TESTS}")
    set_property(GLOBAL PROPERTY ${prefix}_SKIP_TESTS "${arg_SKIP_TESTS}")
    set_property(GLOBAL PROPERTY ${prefix}_NETNS ${arg_NETNS})
endfunction()

# pkg-config's modules found or not; when they are, the imported target
# PkgConfig::HMAF_ENGINE_<NAME>_DEPS (global: libhmaf is another folder's).
function(_hmaf_engine_pkg_config found_out upper)
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
        pkg_check_modules(HMAF_ENGINE_${upper}_DEPS QUIET IMPORTED_TARGET
                          GLOBAL ${ARGN})
    endif()
    if(HMAF_ENGINE_${upper}_DEPS_FOUND)
        set(${found_out} TRUE PARENT_SCOPE)
    else()
        string(REPLACE ";" " " modules "${ARGN}")
        message(STATUS "hmaf: pkg-config finds no ${modules}")
        set(${found_out} FALSE PARENT_SCOPE)
    endif()
endfunction()

# hmaf_engine_variant(<name> <suffix> [CONFORMANCE_ONLY] ENV <VAR=value>...)
# One more run of the engine's tests under ENV, named <test>.<suffix>:
# of its conformance suite, and (without CONFORMANCE_ONLY) of the
# engine-independent tests that take variants (tests/CMakeLists.txt).
# Made wherever its engine-independent tests run.
function(hmaf_engine_variant name suffix)
    cmake_parse_arguments(PARSE_ARGV 2 arg "CONFORMANCE_ONLY" "" "ENV")
    string(TOUPPER ${name} upper)
    set(prefix HMAF_ENGINE_${upper})
    set_property(GLOBAL APPEND PROPERTY ${prefix}_VARIANTS ${suffix})
    set_property(GLOBAL PROPERTY ${prefix}_VARIANT_${suffix}_ENV "${arg_ENV}")
    set_property(GLOBAL PROPERTY ${prefix}_VARIANT_${suffix}_CONFORMANCE_ONLY
                 ${arg_CONFORMANCE_ONLY})
endfunction()

# Once every engine is declared: the registry's table, and the test-only
# libraries.
function(hmaf_engines_finish)
    _hmaf_engine_list_header()
    target_include_directories(hmaf_objects PRIVATE ${HMAF_GENERATED_DIR})
    get_property(built GLOBAL PROPERTY HMAF_ENGINES_BUILT)
    foreach(name IN LISTS built)
        hmaf_engine_property(mode ${name} MODE)
        if(mode STREQUAL "EMULATED")
            hmaf_add_library_copy(hmaf_static_${name} ENGINE ${name})
        endif()
    endforeach()
endfunction()

# engine/engine_list.h: HMAF_ENGINE_LIST(X) is X(name) for every listed
# engine, in the list's order, that the library including it is compiled
# with (HMAF_HAVE_ENGINE_<NAME>). One header for libhmaf and the test-only
# libraries: the definitions choose.
function(_hmaf_engine_list_header)
    get_property(listed GLOBAL PROPERTY HMAF_ENGINE_LIST)
    set(each "")
    set(all "")
    foreach(name IN LISTS listed)
        string(TOUPPER ${name} upper)
        string(APPEND each
            "#ifdef HMAF_HAVE_ENGINE_${upper}\n"
            "#define HMAF_ENGINE_LIST_${upper}(X) X(${name})\n"
            "#else\n"
            "#define HMAF_ENGINE_LIST_${upper}(X)\n"
            "#endif\n")
        string(APPEND all " HMAF_ENGINE_LIST_${upper}(X)")
    endforeach()
    set(HMAF_ENGINE_LIST_EACH "${each}")
    set(HMAF_ENGINE_LIST_ALL "${all}")
    configure_file(${PROJECT_SOURCE_DIR}/src/engine/engine_list.h.in
                   ${HMAF_GENERATED_DIR}/engine/engine_list.h @ONLY)
endfunction()

# hmaf_add_library_copy(<target> [ENGINE <name>])
# A static library of libhmaf's sources and engines (and the test-only
# engine <name>), for a build that needs other flags or another engine:
# the fuzzers, the test-only libraries. A copy for another engine compiles
# only what differs: the sources that list the engines and transports a
# library has (HMAF_SOURCES_PER_LIBRARY, CMakeLists.txt) and that
# engine's; the rest of libhmaf compiles the same for every library, and
# the copy takes those objects from hmaf_objects. A copy without ENGINE
# compiles everything anew.
function(hmaf_add_library_copy target)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "ENGINE" "")
    if(arg_ENGINE)
        _hmaf_check_shared_objects(${arg_ENGINE})
        list(TRANSFORM HMAF_SOURCES_PER_LIBRARY PREPEND ${PROJECT_SOURCE_DIR}/
             OUTPUT_VARIABLE sources)
        # hmaf_objects' objects (CMakeFiles/hmaf_objects.dir/<source>.o)
        # but for those sources.
        list(TRANSFORM HMAF_SOURCES_PER_LIBRARY REPLACE "[.+]" "\\\\\\0"
             OUTPUT_VARIABLE own)
        list(JOIN own "|" own)
        list(APPEND sources
             "$<FILTER:$<TARGET_OBJECTS:hmaf_objects>,EXCLUDE,/(${own})\\.o$>")
    else()
        list(TRANSFORM HMAF_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/
             OUTPUT_VARIABLE sources)
    endif()
    add_library(${target} STATIC ${sources})
    set_target_properties(${target} PROPERTIES C_VISIBILITY_PRESET hidden)
    target_include_directories(${target}
        PUBLIC ${PROJECT_SOURCE_DIR}/include
        PRIVATE ${PROJECT_SOURCE_DIR}/src ${HMAF_GENERATED_DIR})
    target_link_libraries(${target} PUBLIC Threads::Threads)
    get_property(built GLOBAL PROPERTY HMAF_ENGINES_BUILT)
    foreach(name IN LISTS built)
        hmaf_engine_property(mode ${name} MODE)
        if(mode STREQUAL "LIB" OR name STREQUAL "${arg_ENGINE}")
            hmaf_engine_property(definitions ${name} DEFINITIONS)
            hmaf_engine_property(libraries ${name} LIBRARIES)
            target_compile_definitions(${target} PRIVATE ${definitions})
            target_link_libraries(${target} PUBLIC ${libraries})
        endif()
        # libhmaf's own engines are among hmaf_objects' objects there.
        if((mode STREQUAL "LIB" AND NOT arg_ENGINE) OR
           name STREQUAL "${arg_ENGINE}")
            hmaf_engine_property(engine_sources ${name} SOURCES)
            target_sources(${target} PRIVATE ${engine_sources})
        endif()
    endforeach()
endfunction()

# What makes sharing hmaf_objects with a copy for <engine> safe: none of
# its sources but HMAF_SOURCES_PER_LIBRARY, and no header of src/, has a
# preprocessor line that looks at the engines or transports built, or at
# a definition of <engine>'s. One that starts to must join that list.
function(_hmaf_check_shared_objects engine)
    get_target_property(files hmaf_objects SOURCES)
    list(TRANSFORM files PREPEND ${PROJECT_SOURCE_DIR}/ REGEX "^[^/]")
    list(TRANSFORM HMAF_SOURCES_PER_LIBRARY PREPEND ${PROJECT_SOURCE_DIR}/
         OUTPUT_VARIABLE own)
    list(REMOVE_ITEM files ${own})
    file(GLOB_RECURSE headers ${PROJECT_SOURCE_DIR}/src/*.h)
    hmaf_engine_property(definitions ${engine} DEFINITIONS)
    list(TRANSFORM definitions REPLACE "=.*" "")
    list(JOIN definitions "|" names)
    set(names "HMAF_HAVE_ENGINE_|HMAF_HAVE_CHANNEL_|engine_list\\.h|${names}")
    foreach(file IN LISTS files headers)
        file(STRINGS ${file} lines REGEX "^[ \t]*#.*(${names})")
        if(lines)
            message(FATAL_ERROR "hmaf: ${file} depends on the engines or "
                "transports built (${lines}): list it in "
                "HMAF_SOURCES_PER_LIBRARY (CMakeLists.txt)")
        endif()
    endforeach()
endfunction()

# hmaf_engine_property(<out> <name> <what>): what hmaf_add_engine recorded.
function(hmaf_engine_property out name what)
    string(TOUPPER ${name} upper)
    get_property(value GLOBAL PROPERTY HMAF_ENGINE_${upper}_${what})
    set(${out} "${value}" PARENT_SCOPE)
endfunction()

# hmaf_engine_skips(<out> <name> <test>): whether the engine leaves out the
# engine-independent test <label>.<name> (hmaf_add_engine's SKIP_TESTS).
function(hmaf_engine_skips out name test)
    hmaf_engine_property(patterns ${name} SKIP_TESTS)
    set(${out} FALSE PARENT_SCOPE)
    foreach(pattern IN LISTS patterns)
        if(test MATCHES "${pattern}")
            set(${out} TRUE PARENT_SCOPE)
        endif()
    endforeach()
endfunction()

# hmaf_engines_tested(<out>): the engines the engine-independent tests run
# again on: every built one but the first listed (the default, which they
# run on by themselves), unless its tests need hardware (an engine with an
# EMULATION, built with its real dependency).
function(hmaf_engines_tested out)
    get_property(listed GLOBAL PROPERTY HMAF_ENGINE_LIST)
    get_property(built GLOBAL PROPERTY HMAF_ENGINES_BUILT)
    list(GET listed 0 default)
    set(tested "")
    foreach(name IN LISTS built)
        hmaf_engine_property(mode ${name} MODE)
        hmaf_engine_property(emulation ${name} EMULATION)
        if(NOT name STREQUAL default AND
           (mode STREQUAL "EMULATED" OR NOT emulation))
            list(APPEND tested ${name})
        endif()
    endforeach()
    set(${out} "${tested}" PARENT_SCOPE)
endfunction()
