# What an installed libhmaf gives programs of their own (README, "Install
# and link"): pkg-config's hmaf.pc and CMake's find_package(hmaf), both
# relocatable (found from where they lie, not from the prefix they were
# built for), with the dependencies of the engines built into the library.
include(CMakePackageConfigHelpers)

# Engines' pkg-config modules, "NAME|module..." each (HmafEngine.cmake).
get_property(hmaf_pkg_deps GLOBAL PROPERTY HMAF_PACKAGE_PKG_CONFIG)
set(HMAF_PC_REQUIRES_PRIVATE "")
set(HMAF_CONFIG_DEPENDENCIES "")
foreach(dep IN LISTS hmaf_pkg_deps)
    string(FIND "${dep}" "|" bar)
    string(SUBSTRING "${dep}" 0 ${bar} upper)
    math(EXPR bar "${bar} + 1")
    string(SUBSTRING "${dep}" ${bar} -1 modules)
    string(REPLACE ";" " " modules_text "${modules}")
    # pkg-config wants "ucx >= 1.13", CMake's pkg_check_modules either.
    string(REGEX REPLACE "([<>=]+)" " \\1 " pc_text "${modules_text}")
    string(APPEND HMAF_PC_REQUIRES_PRIVATE " ${pc_text}")
    string(APPEND HMAF_CONFIG_DEPENDENCIES
        "pkg_check_modules(HMAF_ENGINE_${upper}_DEPS REQUIRED QUIET "
        "IMPORTED_TARGET ${modules_text})\n")
endforeach()
if(HMAF_CONFIG_DEPENDENCIES)
    set(HMAF_CONFIG_DEPENDENCIES
        "find_dependency(PkgConfig)\n${HMAF_CONFIG_DEPENDENCIES}")
endif()

# hmaf.pc: prefix is found from the file's own folder; except installed
# to /usr (a distribution's package, cmake/HmafDeb.cmake), where it says
# /usr: pkg-config leaves out its system folders only when spelled so,
# and "-I/usr/lib/<triplet>/pkgconfig/../../../include" would put
# /usr/include ahead of the compiler's own. Chosen at install time, by
# the prefix installed to.
set(hmaf_pc_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH HMAF_PC_TO_PREFIX
     /prefix/${hmaf_pc_dir} /prefix)
string(REGEX REPLACE "/$" "" HMAF_PC_TO_PREFIX "${HMAF_PC_TO_PREFIX}")
set(HMAF_PC_PREFIX "\${pcfiledir}/${HMAF_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/hmaf.pc.in
               ${PROJECT_BINARY_DIR}/hmaf.pc @ONLY)
set(HMAF_PC_PREFIX /usr)
configure_file(${CMAKE_CURRENT_LIST_DIR}/hmaf.pc.in
               ${PROJECT_BINARY_DIR}/pc-usr/hmaf.pc @ONLY)
install(CODE "
    set(hmaf_pc \"${PROJECT_BINARY_DIR}/hmaf.pc\")
    if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
        set(hmaf_pc \"${PROJECT_BINARY_DIR}/pc-usr/hmaf.pc\")
    endif()
    file(INSTALL \"\${hmaf_pc}\"
         DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${hmaf_pc_dir}\")"
    COMPONENT dev)

# find_package(hmaf): hmaf::hmaf (shared), hmaf::hmaf_static.
set(hmaf_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/hmaf)
install(EXPORT hmafTargets NAMESPACE hmaf:: DESTINATION ${hmaf_cmake_dir}
        COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/hmafConfig.cmake.in
    ${PROJECT_BINARY_DIR}/hmafConfig.cmake
    INSTALL_DESTINATION ${hmaf_cmake_dir})
# 0.x: only the same minor is compatible (the soname says so too).
if(PROJECT_VERSION_MAJOR EQUAL 0)
    set(hmaf_compat SameMinorVersion)
else()
    set(hmaf_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/hmafConfigVersion.cmake
    COMPATIBILITY ${hmaf_compat})
install(FILES ${PROJECT_BINARY_DIR}/hmafConfig.cmake
              ${PROJECT_BINARY_DIR}/hmafConfigVersion.cmake
        DESTINATION ${hmaf_cmake_dir} COMPONENT dev)
