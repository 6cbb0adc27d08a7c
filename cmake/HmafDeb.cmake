# Debian packages (README, "Install and link"): `cpack -G DEB` in a tree
# configured with -DCMAKE_INSTALL_PREFIX=/usr (GNUInstallDirs then gives
# the multiarch libdir, lib/<triplet>). Each install component is one
# package:
#   runtime -> libhmaf<soversion>: the shared library. Named after its
#              soname (Debian policy 8.1): libhmaf.so.0.1 is libhmaf0.1,
#              so that 0.2, which may break the ABI, installs beside it.
#   dev     -> libhmaf-dev: headers, libhmaf.so, libhmaf.a, hmaf.pc, the
#              CMake package, and the man pages (with HMAF_BUILD_DOCS).
#   tools   -> hmaf-tools: whatever tools/ installs (hmaf-bench, ...).
# Included last: the packages take every component installed above.

set(hmaf_deb_runtime libhmaf${hmaf_soversion})
set(hmaf_deb_release 1)
set(hmaf_deb_version ${PROJECT_VERSION}-${hmaf_deb_release})

# The copyright notice goes with the binaries (LICENSE), where Debian
# looks for it.
set(hmaf_deb_components runtime dev)
set(hmaf_deb_packages ${hmaf_deb_runtime} libhmaf-dev)
if(HMAF_BUILD_TOOLS)
    list(APPEND hmaf_deb_components tools)
    list(APPEND hmaf_deb_packages hmaf-tools)
endif()
foreach(component package IN ZIP_LISTS hmaf_deb_components hmaf_deb_packages)
    install(FILES ${PROJECT_SOURCE_DIR}/LICENSE
            DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${package}
            RENAME copyright COMPONENT ${component})
endforeach()

# An install rule without a component would be left out of every package
# without a word (the smoke test, tests/package/deb_smoke.sh, catches it
# too).
get_cmake_property(hmaf_components COMPONENTS)
foreach(component IN LISTS hmaf_components)
    if(NOT component IN_LIST hmaf_deb_components)
        message(WARNING "hmaf: install component '${component}' is in no "
                "Debian package (cmake/HmafDeb.cmake)")
    endif()
endforeach()

# libhmaf-dev needs the development packages of the engines' SDKs built
# in (hmaf.pc's Requires.private, hmafConfig.cmake's pkg_check_modules):
# the Debian packages that own their .pc files, at the versions asked.
function(hmaf_deb_pkg_config_depends out)
    get_property(deps GLOBAL PROPERTY HMAF_PACKAGE_PKG_CONFIG)
    set(result "")
    foreach(dep IN LISTS deps)
        string(REGEX REPLACE "^[^|]*\\|" "" modules "${dep}")
        foreach(module IN LISTS modules)
            string(REGEX MATCH "^([^<>=]+)(([<>=]+)(.+))?$" _ "${module}")
            set(name ${CMAKE_MATCH_1})
            set(constraint "")
            if(CMAKE_MATCH_2)
                set(constraint " (${CMAKE_MATCH_3} ${CMAKE_MATCH_4})")
            endif()
            execute_process(
                COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=pcfiledir ${name}
                OUTPUT_VARIABLE pcdir OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
            set(owner "")
            if(pcdir)
                execute_process(COMMAND ${HMAF_DPKG_QUERY} -S ${pcdir}/${name}.pc
                    OUTPUT_VARIABLE owner RESULT_VARIABLE failed
                    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
                if(failed)
                    set(owner "")
                endif()
            endif()
            # "libucx-dev:amd64: /usr/lib/.../ucx.pc"
            string(REGEX REPLACE "[:,].*" "" owner "${owner}")
            if(owner)
                list(APPEND result "${owner}${constraint}")
            else()
                # An SDK built from source: nothing to depend on.
                message(STATUS "hmaf: no Debian package owns ${name}.pc: "
                        "libhmaf-dev does not depend on it")
            endif()
        endforeach()
    endforeach()
    list(REMOVE_DUPLICATES result)
    set(${out} "${result}" PARENT_SCOPE)
endfunction()

set(hmaf_deb_dev_depends "${hmaf_deb_runtime} (= ${hmaf_deb_version})")
find_program(HMAF_DPKG_QUERY dpkg-query)
mark_as_advanced(HMAF_DPKG_QUERY)
if(HMAF_CONFIG_DEPENDENCIES AND HMAF_DPKG_QUERY)
    hmaf_deb_pkg_config_depends(hmaf_deb_sdk_depends)
    # hmafConfig.cmake finds them with pkg-config.
    list(APPEND hmaf_deb_dev_depends pkg-config ${hmaf_deb_sdk_depends})
endif()
list(JOIN hmaf_deb_dev_depends ", " hmaf_deb_dev_depends)

# What the packages hold, for a tree to build before cpack when the rest
# of it need not be (.ci/run): the libraries and what tools/ builds.
add_custom_target(hmaf-deb-contents)
add_dependencies(hmaf-deb-contents hmaf hmaf_static)
if(HMAF_BUILD_TOOLS)
    get_property(hmaf_tool_targets DIRECTORY ${PROJECT_SOURCE_DIR}/tools
                 PROPERTY BUILDSYSTEM_TARGETS)
    add_dependencies(hmaf-deb-contents ${hmaf_tool_targets})
endif()
if(HMAF_BUILD_DOCS)
    add_dependencies(hmaf-deb-contents ${HMAF_DOC_TARGET})
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hmaf)
set(CPACK_PACKAGE_VENDOR "the HMAF authors")
if(NOT CPACK_PACKAGE_CONTACT)
    set(CPACK_PACKAGE_CONTACT "the HMAF authors")
endif()
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Installed with DESTDIR, so that the install rules see the prefix the
# package has (hmaf.pc, HmafPackage.cmake).
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ${hmaf_deb_components})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${hmaf_deb_release})
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# shlibs for programs built against libhmaf, and the ldconfig trigger.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${hmaf_deb_runtime})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
"host memory access framework, shared library
A process on a dpu (or another host) reads, writes and maps a host
process's memory through pluggable engines.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libhmaf-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${hmaf_deb_dev_depends}")
set(CPACK_COMPONENT_DEV_DESCRIPTION
"host memory access framework, development files
Headers, the static library, pkg-config's hmaf.pc and CMake's
find_package(hmaf).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME hmaf-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SHLIBDEPS ON)
# dpkg-shlibdeps finds libhmaf in this tree, but no package owns it yet:
# the dependency on it is written here, on this very build of it.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR})
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${hmaf_deb_runtime} (= ${hmaf_deb_version})")
set(CPACK_COMPONENT_TOOLS_DESCRIPTION
"host memory access framework, tools
hmaf-bench, the benchmark, and the other tools of libhmaf.")

include(CPack)
