#include <hmaf/error.h>

#include <stddef.h>

HMAF_API const char *hmaf_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define HMAF_ERROR_TEXT_(name, value, text)                                   \
    case (value):                                                              \
        return text;
        HMAF_ERROR_MAP(HMAF_ERROR_TEXT_)
#undef HMAF_ERROR_TEXT_
    default:
        return "unknown error";
    }
}

HMAF_API const char *hmaf_err_name(int err)
{
    switch (err) {
    case 0:
        return "HMAF_OK";
#define HMAF_ERROR_NAME_(name, value, text)                                   \
    case (value):                                                              \
        return "HMAF_" #name;
        HMAF_ERROR_MAP(HMAF_ERROR_NAME_)
#undef HMAF_ERROR_NAME_
    default:
        return "HMAF_UNKNOWN";
    }
}
