/* common/opt.c: parsing and printing over an opt_def table. */
#include "opt.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FIELD(target, d, T) ((T *)((char *)(target) + (d)->offset))
#define CFIELD(target, d, T) ((const T *)((const char *)(target) + (d)->offset))

const struct opt_def *opt_find(const struct opt_def *defs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].name, name) == 0)
            return &defs[i];
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const t[] = {"true", "1", "yes", "on"},
                             *const f[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ERR_INVAL;
}

/* Parses a finite number with an optional unit suffix from `units`. */
static int parse_number(const char *v, const char *const *suffix, const double *mult,
                        size_t n_units, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno == ERANGE || !isfinite(x))
        return ERR_INVAL;
    if (*end) {
        size_t i;
        for (i = 0; i < n_units; i++)
            if (strcasecmp(end, suffix[i]) == 0)
                break;
        if (i == n_units)
            return ERR_INVAL;
        x *= mult[i];
        if (!isfinite(x))       // "1e308h": finite number, infinite product
            return ERR_INVAL;
    }
    *out = x;
    return 0;
}

static bool in_choices(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && strncmp(p, v, l) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

static int check_bounds(const struct opt_def *d, double x, const char *v, struct errbuf *eb)
{
    if (d->min <= d->max && (x < d->min || x > d->max))
        return err_set(eb, ERR_RANGE, "--%s: '%s' is out of range %g..%g", d->name, v, d->min,
                       d->max);
    return 0;
}

static int set_one(const struct opt_def *d, void *target, const char *v, struct errbuf *eb)
{
    static const char *const size_sfx[] = {"", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb",
                                           "gib"};
    static const double size_mul[] = {1, 1, 1024, 1024, 1024, 1048576, 1048576, 1048576,
                                      1073741824.0, 1073741824.0, 1073741824.0};
    static const char *const sec_sfx[] = {"", "s", "ms", "m", "min", "h"};
    static const double sec_mul[] = {1, 1, 0.001, 60, 60, 3600};
    double x;
    switch (d->type) {
    case OPT_BOOL:
        if (parse_bool(v, FIELD(target, d, bool)) < 0)
            return err_set(eb, ERR_INVAL, "--%s: '%s' is not a boolean (true|false)", d->name, v);
        return 0;
    case OPT_INT:
    case OPT_INT64: {
        char *end;
        errno = 0;
        long long ll = strtoll(v, &end, 10);
        if (end == v || *end || errno == ERANGE)
            return err_set(eb, ERR_INVAL, "--%s: '%s' is not an integer", d->name, v);
        if (check_bounds(d, (double)ll, v, eb) < 0)
            return ERR_RANGE;
        if (d->type == OPT_INT) {
            if (ll < INT32_MIN || ll > INT32_MAX)
                return err_set(eb, ERR_RANGE, "--%s: '%s' is out of range", d->name, v);
            *FIELD(target, d, int) = (int)ll;
        } else {
            *FIELD(target, d, int64_t) = (int64_t)ll;
        }
        return 0;
    }
    case OPT_DOUBLE:
        if (parse_number(v, NULL, NULL, 0, &x) < 0)
            return err_set(eb, ERR_INVAL, "--%s: '%s' is not a number", d->name, v);
        if (check_bounds(d, x, v, eb) < 0)
            return ERR_RANGE;
        *FIELD(target, d, double) = x;
        return 0;
    case OPT_SIZE:
        if (parse_number(v, size_sfx, size_mul, sizeof size_mul / sizeof size_mul[0], &x) < 0 ||
            x < 0 || x > 1e18 || x != floor(x))
            return err_set(eb, ERR_INVAL, "--%s: '%s' is not a byte size (e.g. 8M, 512K)",
                           d->name, v);
        if (check_bounds(d, x, v, eb) < 0)
            return ERR_RANGE;
        *FIELD(target, d, size_t) = (size_t)x;
        return 0;
    case OPT_SECONDS:
        if (parse_number(v, sec_sfx, sec_mul, sizeof sec_mul / sizeof sec_mul[0], &x) < 0 ||
            x < 0)
            return err_set(eb, ERR_INVAL, "--%s: '%s' is not a duration (e.g. 30s, 500ms)",
                           d->name, v);
        if (check_bounds(d, x, v, eb) < 0)
            return ERR_RANGE;
        *FIELD(target, d, double) = x;
        return 0;
    case OPT_STRING: {
        if (d->choices && !in_choices(d->choices, v))
            return err_set(eb, ERR_INVAL, "--%s: '%s' is not one of %s", d->name, v, d->choices);
        char *copy = strdup(v);
        if (!copy)
            return ERR_NOMEM;
        char **f = FIELD(target, d, char *);
        free(*f);
        *f = copy;
        return 0;
    }
    }
    return ERR_INVAL;
}

int opt_defaults(const struct opt_def *defs, size_t n, void *target, struct errbuf *eb)
{
    for (size_t i = 0; i < n; i++) {
        const struct opt_def *d = &defs[i];
        switch (d->type) {
        case OPT_BOOL: *FIELD(target, d, bool) = false; break;
        case OPT_INT: *FIELD(target, d, int) = 0; break;
        case OPT_INT64: *FIELD(target, d, int64_t) = 0; break;
        case OPT_DOUBLE:
        case OPT_SECONDS: *FIELD(target, d, double) = 0; break;
        case OPT_SIZE: *FIELD(target, d, size_t) = 0; break;
        case OPT_STRING:
            free(*FIELD(target, d, char *));
            *FIELD(target, d, char *) = NULL;
            break;
        }
        if (d->defval) {
            int rc = set_one(d, target, d->defval, eb);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

void opt_free(const struct opt_def *defs, size_t n, void *target)
{
    for (size_t i = 0; i < n; i++) {
        if (defs[i].type == OPT_STRING) {
            char **f = FIELD(target, &defs[i], char *);
            free(*f);
            *f = NULL;
        }
    }
}

int opt_set(const struct opt_def *defs, size_t n, void *target, const char *name,
            const char *value, struct errbuf *eb)
{
    const struct opt_def *d = opt_find(defs, n, name);
    if (!d)
        return err_set(eb, ERR_NOTFOUND, "unknown option '%s'", name);
    return set_one(d, target, value, eb);
}

int opt_parse_argv(const struct opt_def *defs, size_t n, void *target, int argc, char **argv,
                   int *n_positional, bool *seen, struct errbuf *eb)
{
    int npos = 0;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            argv[npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (a[1] != '-')
            return err_set(eb, ERR_INVAL, "unknown flag %s (options are --long-names)", a);
        char name[128];
        const char *val = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl == 0 || nl >= sizeof name)
            return err_set(eb, ERR_INVAL, "unknown flag %.100s", a);
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        if (eq)
            val = eq + 1;
        const struct opt_def *d = opt_find(defs, n, name);
        bool negated = false;
        if (!d && strncmp(name, "no-", 3) == 0) {
            d = opt_find(defs, n, name + 3);
            if (d && d->type == OPT_BOOL && !eq)
                negated = true;
            else
                d = NULL;
        }
        if (!d)
            return err_set(eb, ERR_INVAL, "unknown flag --%s (see --help)", name);
        if (d->type == OPT_BOOL && !val) {
            val = negated ? "false" : "true";
        } else if (!val) {
            if (i + 1 >= argc)
                return err_set(eb, ERR_INVAL, "--%s needs a value (%s)", d->name,
                               d->metavar ? d->metavar : "VALUE");
            val = argv[++i];
        }
        int rc = set_one(d, target, val, eb);
        if (rc < 0)
            return rc;
        if (seen)
            seen[d - defs] = true;
    }
    if (n_positional)
        *n_positional = npos;
    return 0;
}

void opt_format(const struct opt_def *d, const void *target, char *buf, size_t cap)
{
    switch (d->type) {
    case OPT_BOOL: snprintf(buf, cap, "%s", *CFIELD(target, d, bool) ? "true" : "false"); break;
    case OPT_INT: snprintf(buf, cap, "%d", *CFIELD(target, d, int)); break;
    case OPT_INT64: snprintf(buf, cap, "%" PRId64, *CFIELD(target, d, int64_t)); break;
    case OPT_DOUBLE: snprintf(buf, cap, "%g", *CFIELD(target, d, double)); break;
    case OPT_SECONDS: snprintf(buf, cap, "%gs", *CFIELD(target, d, double)); break;
    case OPT_SIZE: snprintf(buf, cap, "%zu", *CFIELD(target, d, size_t)); break;
    case OPT_STRING: {
        const char *s = *CFIELD(target, d, char *);
        if (d->flags & OPT_F_SECRET)
            snprintf(buf, cap, "%s", s ? "(set)" : "");
        else
            snprintf(buf, cap, "%s", s ? s : "");
        break;
    }
    }
}

void opt_print_help(FILE *f, const struct opt_def *defs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct opt_def *d = &defs[i];
        char left[96];
        if (d->type == OPT_BOOL)
            snprintf(left, sizeof left, "--%s", d->name);
        else
            snprintf(left, sizeof left, "--%s %s", d->name, d->metavar ? d->metavar : "VALUE");
        fprintf(f, "  %-30s %s", left, d->help ? d->help : "");
        if (d->defval && d->defval[0])
            fprintf(f, " (default: %s)", d->defval);
        if (d->choices)
            fprintf(f, " [%s]", d->choices);
        fputc('\n', f);
    }
}

void opt_cmd_usage(const struct opt_cmd *c, FILE *f)
{
    fprintf(f, "%s\n\n", c->usage);
    opt_print_help(f, c->defs, c->n);
}

bool opt_cmd_help(const struct opt_cmd *c, int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            opt_cmd_usage(c, stdout);
            return true;
        }
    }
    return false;
}

int opt_cmd_parse(const struct opt_cmd *c, void *target, int argc, char **argv)
{
    if (opt_cmd_help(c, argc, argv))
        return 0;
    struct errbuf eb = {{0}};
    int npos = 0;
    if (opt_defaults(c->defs, c->n, target, &eb) < 0 ||
        opt_parse_argv(c->defs, c->n, target, argc, argv, &npos, NULL, &eb) < 0) {
        fprintf(stderr, "orthod %s: %s\n", c->name, eb.msg);
        return 2;
    }
    const int want = c->arg ? 1 : 0;
    if (npos > want) {
        fprintf(stderr, "orthod %s: unexpected argument '%.200s'%s%s\n", c->name, argv[want],
                c->extra_hint ? " " : "", c->extra_hint ? c->extra_hint : "");
        return 2;
    }
    for (size_t i = 0; i < c->n; i++) {
        const struct opt_def *d = &c->defs[i];
        if ((d->flags & OPT_F_REQUIRED) && d->type == OPT_STRING && !*FIELD(target, d, char *)) {
            fprintf(stderr, "orthod %s: --%s is required (see --help)\n", c->name, d->name);
            return 2;
        }
    }
    if (npos < want) {
        fprintf(stderr, "orthod %s: %s is required (see --help)\n", c->name, c->arg);
        return 2;
    }
    return -1;
}
