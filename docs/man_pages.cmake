# Stages the man pages doxygen wrote (MAN_DIR/man3) for install, in
# OUT_DIR/man3 (cmake -DMAN_DIR=... -DOUT_DIR=... -P man_pages.cmake).
#
# Only the pages of HMAF's own names: hmaf_* and HMAF_* (functions, types,
# structs, macros, error codes) and the headers'. Not the pages MAN_LINKS
# writes for struct fields (size.3, status.3, len.3: names any other
# library's pages may have). A header's page, session.h.3, is renamed after
# the header's include path as man-pages names them (sys/types.h:
# sys_types.h), hmaf_session.h.3, and the links to it follow.
if(NOT MAN_DIR OR NOT OUT_DIR)
    message(FATAL_ERROR "man_pages.cmake: MAN_DIR and OUT_DIR are needed")
endif()
file(REMOVE_RECURSE ${OUT_DIR})
file(MAKE_DIRECTORY ${OUT_DIR}/man3)

file(GLOB headers RELATIVE ${MAN_DIR}/man3 ${MAN_DIR}/man3/*.h.3)
file(GLOB names RELATIVE ${MAN_DIR}/man3
     ${MAN_DIR}/man3/hmaf_*.3 ${MAN_DIR}/man3/HMAF_*.3)
if(NOT headers OR NOT names)
    message(FATAL_ERROR "man_pages.cmake: no pages in ${MAN_DIR}/man3")
endif()
foreach(page IN LISTS headers names)
    file(READ ${MAN_DIR}/man3/${page} text)
    # A link is one line, ".so man3/session.h.3".
    string(REGEX REPLACE "^\\.so man3/([^\n]+\\.h\\.3)"
           ".so man3/hmaf_\\1" text "${text}")
    if(page MATCHES "\\.h\\.3$")
        set(page hmaf_${page})
    endif()
    file(WRITE ${OUT_DIR}/man3/${page} "${text}")
endforeach()
