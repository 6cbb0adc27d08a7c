/*
 * --help for the examples and tools: the usage on stdout, and success.
 */
#ifndef HMAF_EXAMPLES_HELP_H
#define HMAF_EXAMPLES_HELP_H

#include <string.h>

/* --help (or -h) alone. */
static inline int asked_help(int argc, char **argv)
{
    return argc == 2 &&
           (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
}

#endif
