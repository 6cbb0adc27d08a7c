/*
 * The library's version at run time (version.h): a program built against
 * one version's headers may run with another's library, within a soname.
 */
#include <hmaf/version.h>

#define HMAF_STR_(x) #x
#define HMAF_STR(x) HMAF_STR_(x)

HMAF_API const char *hmaf_version(void)
{
    return HMAF_STR(HMAF_VERSION_MAJOR) "." HMAF_STR(
        HMAF_VERSION_MINOR) "." HMAF_STR(HMAF_VERSION_PATCH);
}

HMAF_API unsigned hmaf_version_number(void)
{
    return HMAF_VERSION_NUMBER;
}
