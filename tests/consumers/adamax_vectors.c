/* A consumer of the Adamax test vectors in C: an Adamax step of its own,
 * run on every vector of the document and judged as the document says.
 *
 *   gcc -O2 -ffp-contract=off -o adamax_vectors adamax_vectors.c -lm
 *   ./adamax_vectors vectors.json        # exit 0: all conform, 1: some do not
 *   ./adamax_vectors --exec              # the line protocol of `adamax-cy conform --exec`
 *
 * Build with -DBUG=1 (m), -DBUG=2 (u) or -DBUG=3 (θ) for a deliberately wrong
 * step, to see the vectors catch it. The JSON reader is the smallest that
 * reads the document: objects, arrays, strings, numbers and literals. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BUG
#define BUG 0
#endif

/* ------------------------------------------------------------ JSON */
typedef struct J { char type; char *str; double num; int n; char **keys; struct J **items; } J;
static const char *p;
static void ws(void) { while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++; }
static J *value(void);
static char *string(void) {
    size_t cap = 16, n = 0; char *s = malloc(cap);
    p++; /* opening quote */
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') { c = *p++; if (c == 'n') c = '\n'; else if (c == 'u') { p += 4; c = '?'; } }
        if (n + 2 > cap) s = realloc(s, cap *= 2);
        s[n++] = c;
    }
    p++; s[n] = 0; return s;
}
static J *value(void) {
    J *j = calloc(1, sizeof *j);
    ws();
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        j->type = *p++;
        ws();
        while (*p != close) {
            j->items = realloc(j->items, (j->n + 1) * sizeof *j->items);
            j->keys = realloc(j->keys, (j->n + 1) * sizeof *j->keys);
            j->keys[j->n] = NULL;
            if (close == '}') { ws(); j->keys[j->n] = string(); ws(); p++; /* colon */ }
            j->items[j->n++] = value();
            ws(); if (*p == ',') p++; ws();
        }
        p++;
    } else if (*p == '"') { j->type = 's'; j->str = string(); }
    else if (*p == 't' || *p == 'f' || *p == 'n') { j->type = 'b'; j->num = *p == 't'; p += *p == 'f' ? 5 : 4; }
    else { char *end; j->type = 'd'; j->num = strtod(p, &end); p = end; }
    return j;
}
static J *get(J *o, const char *key) {
    for (int i = 0; i < o->n; i++) if (o->keys[i] && !strcmp(o->keys[i], key)) return o->items[i];
    fprintf(stderr, "missing field %s\n", key); exit(2);
}
static double num(J *j) { return j->type == 's' ? strtod(j->str, NULL) : j->num; } /* hex, inf, nan */

/* ---------------------------------------------------- the step, per dtype */
#define STEP(NAME, T)                                                                          \
static void NAME(int n, const double *param, const double *grad, const double *m0, const double *u0,\
                 long long t, double lr, double beta1, double beta2, double eps, double wd,      \
                 int decoupled, int maximize, int torch, double *out_p, double *out_m, double *out_u) {\
    /* coefficients in double, then rounded to the dtype; the step size c = lr / (1 - beta1^t) */ \
    T b1 = (T)beta1, b2 = (T)beta2, e = (T)eps, w = (T)wd, omb1 = (T)(1.0 - beta1);           \
    T lrwd = (T)(lr * wd), c = (T)(lr / (1.0 - pow(beta1, (double)t)));                      \
    for (int i = 0; i < n; i++) {                                                             \
        T th = (T)param[i], g = (T)grad[i], m = (T)m0[i], u = (T)u0[i];                         \
        if (maximize) g = -g;                                                                 \
        if (wd != 0 && !decoupled) g = g + w * th;                                            \
        if (wd != 0 && decoupled) th = th - lrwd * th;                                        \
        T mt = BUG == 1 ? b1 * m + g - b1 * g : b1 * m + omb1 * g;                              \
        T ag = (T)fabs((double)g);                                                            \
        T ut, d;                                                                              \
        if (torch || BUG == 2) { T a = b2 * u, b = ag + e; ut = (a > b || isnan(a)) ? a : b; } \
        else { T a = b2 * u; ut = (a > ag || isnan(a)) ? a : ag; }                             \
        d = torch ? ut : ut + e;                                                              \
        T r = mt / d;                                                                         \
        if (mt == 0 && d == 0) r = mt - mt; /* eps = 0 and nothing to learn from */          \
        T s = BUG == 3 ? (T)lr * r : c * r;                                                   \
        out_p[i] = th - s; out_m[i] = mt; out_u[i] = ut;                                      \
    }                                                                                         \
}
STEP(step_float32, float)
STEP(step_float64, double)

static int same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

/* One JSON case per line on stdin, one JSON answer per line on stdout. */
static void print_list(const char *name, int n, const double *x) {
    printf("\"%s\":[", name);
    for (int i = 0; i < n; i++) printf(isnan(x[i]) ? "%s\"nan\"" : "%s\"%a\"", i ? "," : "", x[i]);
    printf("]");
}
static int serve(void) {
    char *line = NULL; size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        p = line;
        J *v = value();
        int n = get(v, "param")->n;
        double *in[4], *out[3];
        const char *inputs[4] = {"param", "grad", "m", "u"};
        for (int a = 0; a < 4; a++) {
            in[a] = malloc(n * sizeof(double));
            for (int i = 0; i < n; i++) in[a][i] = num(get(v, inputs[a])->items[i]);
        }
        for (int a = 0; a < 3; a++) out[a] = malloc(n * sizeof(double));
        (!strcmp(get(v, "dtype")->str, "float32") ? step_float32 : step_float64)(n, in[0], in[1], in[2], in[3],
            (long long)num(get(v, "t")), num(get(v, "lr")), num(get(v, "beta1")), num(get(v, "beta2")),
            num(get(v, "eps")), num(get(v, "weight_decay")), (int)num(get(v, "decoupled_weight_decay")),
            (int)num(get(v, "maximize")), !strcmp(get(v, "convention")->str, "torch"), out[0], out[1], out[2]);
        printf("{\"id\":\"%s\",", get(v, "id")->str);
        print_list("param", n, out[0]); printf(","); print_list("m", n, out[1]); printf(",");
        print_list("u", n, out[2]); printf("}\n");
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--exec")) return serve();
    if (argc != 2) { fprintf(stderr, "usage: %s vectors.json | --exec\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "rb"); if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END); long size = ftell(f); rewind(f);
    char *text = malloc(size + 1); text[fread(text, 1, size, f)] = 0; fclose(f);
    p = text;
    J *vectors = get(value(), "vectors");
    int failed = 0;
    for (int k = 0; k < vectors->n; k++) {
        J *v = vectors->items[k], *exp = get(v, "expected");
        int n = get(v, "param")->n;
        double *in[4], *out[3], *want[3], *tol = malloc(n * sizeof(double));
        const char *inputs[4] = {"param", "grad", "m", "u"}, *outputs[3] = {"param", "m", "u"};
        for (int a = 0; a < 4; a++) {
            in[a] = malloc(n * sizeof(double));
            for (int i = 0; i < n; i++) in[a][i] = num(get(v, inputs[a])->items[i]);
        }
        for (int a = 0; a < 3; a++) {
            out[a] = malloc(n * sizeof(double)); want[a] = malloc(n * sizeof(double));
            for (int i = 0; i < n; i++) want[a][i] = num(get(exp, outputs[a])->items[i]);
        }
        for (int i = 0; i < n; i++) tol[i] = num(get(get(v, "tolerance"), "param_abs")->items[i]);
        int f32 = !strcmp(get(v, "dtype")->str, "float32");
        (f32 ? step_float32 : step_float64)(n, in[0], in[1], in[2], in[3], (long long)num(get(v, "t")),
            num(get(v, "lr")), num(get(v, "beta1")), num(get(v, "beta2")), num(get(v, "eps")),
            num(get(v, "weight_decay")), (int)num(get(v, "decoupled_weight_decay")),
            (int)num(get(v, "maximize")), !strcmp(get(v, "convention")->str, "torch"),
            out[0], out[1], out[2]);
        /* Judge in the order of the formulas: m, u, then θ. */
        const char *wrong = NULL; int at = 0;
        for (int i = n - 1; i >= 0; i--) if (!same(out[0][i], want[0][i]) && !(fabs(out[0][i] - want[0][i]) <= tol[i])) { wrong = "theta"; at = i; }
        for (int i = n - 1; i >= 0; i--) if (!same(out[2][i], want[2][i])) { wrong = "u"; at = i; }
        for (int i = n - 1; i >= 0; i--) if (!same(out[1][i], want[1][i])) { wrong = "m"; at = i; }
        if (wrong) {
            int a = !strcmp(wrong, "m") ? 1 : !strcmp(wrong, "u") ? 2 : 0;
            printf("FAIL %s: %s element %d is %a, expected %a\n", get(v, "id")->str, wrong, at, out[a][at], want[a][at]);
            failed++;
        }
    }
    printf("%d of %d vectors conform\n", vectors->n - failed, vectors->n);
    return failed ? 1 : 0;
}
