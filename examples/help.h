/*
 * --help for the examples and tools: the usage on stdout, and success;
 * a wrong command line: the usage on stderr, and 2.
 */
#ifndef HMAF_EXAMPLES_HELP_H
#define HMAF_EXAMPLES_HELP_H

#include <stdio.h>
#include <string.h>

/* --help (or -h) alone. */
static inline int asked_help(int argc, char **argv)
{
    return argc == 2 &&
           (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
}

/* Prints usage, and gives the exit status: asked for (--help), on stdout
 * and 0; else (a command line that is not one) on stderr and 2. */
static inline int print_usage(const char *usage, int asked)
{
    fputs(usage, asked ? stdout : stderr);
    return asked ? 0 : 2;
}

#endif
