/*
 * JSON output of the tools (hmaf-bench's results.json, hmaf-info --json).
 */
#ifndef HMAF_TOOLS_JSON_H
#define HMAF_TOOLS_JSON_H

#include <stdio.h>

/* s as a JSON string: quoted, with quotes, backslashes and control
 * characters escaped. */
static inline void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
        } else {
            fputc(*s, f);
        }
    }
    fputc('"', f);
}

#endif
