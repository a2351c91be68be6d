/* common/opt.h: table-driven options shared by command-line flags and the config file.
 * Owns: struct opt_def (one row per option: name, type, where it lives in the caller's
 * struct, default, bounds, help) and parsing/printing over such a table (redis-style
 * config table). Every config-file key is also a `--key` flag with the same parser, so
 * the two can never disagree. String values are heap copies owned by the target struct;
 * release them with opt_free().
 * Thread: any; no global state. */
#ifndef ORTHOD_COMMON_OPT_H
#define ORTHOD_COMMON_OPT_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum opt_type {
    OPT_BOOL,      /* bool: --x, --no-x, --x=true|false|1|0|yes|no|on|off */
    OPT_INT,       /* int, bounds inclusive */
    OPT_INT64,     /* int64_t */
    OPT_DOUBLE,    /* double */
    OPT_STRING,    /* char * (heap); choices: `choices` is "a|b|c" when non-NULL */
    OPT_SIZE,      /* size_t bytes; accepts suffixes K, M, G (1024-based), e.g. 8M */
    OPT_SECONDS,   /* double seconds; accepts suffixes ms, s, m, h, e.g. 30s, 500ms */
};

enum {
    OPT_F_CONFIG = 1u << 0,   /* may appear in the config file */
    OPT_F_SECRET = 1u << 1,   /* printed as "(set)" by opt_format */
    OPT_F_REQUIRED = 1u << 2, /* OPT_STRING a command needs (opt_cmd_parse) */
};

struct opt_def {
    const char *name;         /* kebab-case; the flag is --name, the config key is name */
    enum opt_type type;
    size_t offset;            /* offsetof(target struct, field) */
    const char *defval;       /* default, parsed like user input; NULL: zero / NULL */
    double min, max;          /* numeric bounds (ignored when min > max) */
    const char *choices;      /* OPT_STRING only: "a|b|c" or NULL */
    unsigned flags;
    const char *metavar;      /* for --help: "N", "PATH" */
    const char *help;
};

/* Sets every field to its default. Returns 0, or ERR_INVAL if a default fails to parse
 * (a programming error; the message names the option). */
int opt_defaults(const struct opt_def *defs, size_t n, void *target, struct errbuf *eb);
/* Frees the heap strings of every OPT_STRING field and NULLs them. */
void opt_free(const struct opt_def *defs, size_t n, void *target);
const struct opt_def *opt_find(const struct opt_def *defs, size_t n, const char *name);
/* Parses value for option `name` into target. ERR_NOTFOUND for an unknown name,
 * ERR_INVAL / ERR_RANGE with a message naming the option and the accepted values. */
int opt_set(const struct opt_def *defs, size_t n, void *target, const char *name,
            const char *value, struct errbuf *eb);
/* Parses argv[0..argc) (no program/subcommand name): --name value, --name=value,
 * --flag / --no-flag for booleans, `--` ends options. Non-option arguments are moved to
 * the front of argv in order and counted in *n_positional. `seen` (optional, n bools)
 * records which options were given. Errors name the flag ("unknown flag --foo",
 * "--port: '99999' is out of range 1..65535"). */
int opt_parse_argv(const struct opt_def *defs, size_t n, void *target, int argc, char **argv,
                   int *n_positional, bool *seen, struct errbuf *eb);
/* Formats the current value of option d into buf (for `orthod config`). */
void opt_format(const struct opt_def *d, const void *target, char *buf, size_t cap);
/* Writes "  --name METAVAR   help (default: x)" lines. */
void opt_print_help(FILE *f, const struct opt_def *defs, size_t n);
/* --- `orthod CMD` subcommands: every one parses its command line through these --- */
struct opt_cmd {
    const char *name;         /* "tokenize": messages read "orthod tokenize: ..." */
    const char *usage;        /* --help prints this, a blank line, then the flags */
    const struct opt_def *defs;
    size_t n;
    const char *arg;          /* the one positional argument ("TEXT"), or NULL for none */
    const char *extra_hint;   /* said after "unexpected argument 'x'", e.g. "(use --prompt TEXT)" */
};
void opt_cmd_usage(const struct opt_cmd *c, FILE *f);
/* With --help or -h before any `--`: prints the usage to stdout and returns true (the
 * command exits 0 before parsing anything else). */
bool opt_cmd_help(const struct opt_cmd *c, int argc, char **argv);
/* The whole command line: --help as opt_cmd_help (returns 0); else the defaults, then the
 * flags into target, then the positional argument c->arg (left in argv[0]). A bad flag, a
 * missing OPT_F_REQUIRED flag or positional argument, or an extra one prints
 * "orthod NAME: <what is wrong>" to stderr and returns 2. Returns -1 when the command
 * should go on. Release target with opt_free whatever the result. */
int opt_cmd_parse(const struct opt_cmd *c, void *target, int argc, char **argv);

#endif
