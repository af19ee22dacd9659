/* s4d_fxp.c: the integer time step of the S4D model (SPEC.md 14.3) in one C99 file, libc only (plus POSIX mkdir).

   A worked outside implementation for `s4dconf vectors` (SPEC.md 10.1), and the integer step written out for a
   hardware engineer, without numpy. It reads a fixed-point export (DIR/cases.txt and the .bin files it names), runs
   every case and writes the outputs that `s4dconf vectors verify` checks bit for bit, saturation counts included:

       s4dconf vectors export DIR --numeric-class fixed-point
       cc -std=c99 -O2 -Wall -Werror -o s4d_fxp s4d_fxp.c
       ./s4d_fxp DIR OUT
       s4dconf vectors verify DIR --outputs OUT

   Every .bin is raw little-endian int64 (float64 for the input u) in C order; this program runs on a little-endian
   host (checked). Exit 0 when every case ran, 2 on bad input (the message names the file).

   Arithmetic: every intermediate is an integer below 2^53 in magnitude (SPEC.md 14.5), so int64 never overflows.

   For the test suite only, two deliberately wrong variants that verify must reject:
     -DS4D_TRUNCATE               every right shift rounds toward zero instead of down (floor)
     -DS4D_NO_STATE_SATURATION    the state of step 3a is not clamped (nor counted)                              */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LAYERS 64
#define PATH_LEN 4096

/* One block of cases.txt: the case, its model's sizes, format and shifts (SPEC.md 14.1-14.2). */
typedef struct {
    char id[512], case_dir[512], model_dir[512];
    long N, L, d_input, H, P, n_layers, n_classes, use_D, relu;
    long msg_bits, state_bits, frac_bits, half_up, inp_exp;
    long shift_encoder, shift_mixer[MAX_LAYERS], shift_decoder;
    long n_steps, n_channels, n_state_steps;
} Case;

static const struct { const char *key; size_t offset; } FIELDS[] = {
    {"N", offsetof(Case, N)}, {"L", offsetof(Case, L)}, {"d_input", offsetof(Case, d_input)},
    {"H", offsetof(Case, H)}, {"P", offsetof(Case, P)}, {"n_layers", offsetof(Case, n_layers)},
    {"n_classes", offsetof(Case, n_classes)}, {"use_D", offsetof(Case, use_D)}, {"relu", offsetof(Case, relu)},
    {"msg_bits", offsetof(Case, msg_bits)}, {"state_bits", offsetof(Case, state_bits)},
    {"frac_bits", offsetof(Case, frac_bits)}, {"half_up", offsetof(Case, half_up)},
    {"inp_exp", offsetof(Case, inp_exp)}, {"shift_encoder", offsetof(Case, shift_encoder)},
    {"shift_decoder", offsetof(Case, shift_decoder)}, {"n_steps", offsetof(Case, n_steps)},
    {"n_channels", offsetof(Case, n_channels)}, {"n_state_steps", offsetof(Case, n_state_steps)},
};

/* Saturation counters (SPEC.md 14.4), in the order of the saturations file: input, encoder, decoder, then per layer
   state, message, relu, block. */
enum { CNT_INPUT, CNT_ENCODER, CNT_DECODER, CNT_LAYERS };
enum { CNT_STATE, CNT_MESSAGE, CNT_RELU, CNT_BLOCK, CNT_PER_LAYER };

/* One S4D layer: integer coefficients (H, P) in Q frac_bits, D (H), mixing weights W (H, H), and its state. */
typedef struct {
    int64_t *ar, *ai, *br, *bi, *cr, *ci, *D, *W;
    int64_t *xr, *xi; /* state x of one stream, (H, P), act_exp[i] fractional bits */
    int64_t *y;       /* the S4D output y_i of the last step, (H) */
} Layer;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("s4d_fxp: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *alloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size);
    if (!p) die("out of memory");
    return p;
}

/* ------------------------------------------------------------------ the primitives of SPEC.md 14.1 */

/* R(a, s): a / 2^s rounded down ("floor", an arithmetic shift) or half up for s >= 1; an exact left shift for
   s <= 0. C99 leaves >> of a negative number to the compiler, so floor is written out for a < 0. */
static int64_t rescale(int64_t a, long s, int half_up) {
    if (s <= 0) return a * ((int64_t)1 << -s);
    if (half_up) a += (int64_t)1 << (s - 1);
#ifdef S4D_TRUNCATE
    return a >= 0 ? a >> s : -((-a) >> s); /* WRONG on purpose: toward zero */
#else
    return a >= 0 ? a >> s : -((-a - 1) >> s) - 1; /* floor(a / 2^s) */
#endif
}

/* sat_W(a): clamp to the signed width, counting every clamped element. */
static int64_t sat(int64_t a, long bits, int64_t *count) {
    int64_t hi = ((int64_t)1 << (bits - 1)) - 1, lo = -hi - 1;
    if (a > hi) { ++*count; return hi; }
    if (a < lo) { ++*count; return lo; }
    return a;
}

#ifdef S4D_NO_STATE_SATURATION
#define SAT_STATE(a, bits, count) ((void)(bits), (void)(count), (a)) /* WRONG on purpose */
#else
#define SAT_STATE(a, bits, count) sat(a, bits, count)
#endif

/* Step 1, the one float operation: u_q = sat_M(floor(u 2^inp_exp)), + 1/2 before the floor for half_up. A product
   with a power of two is exact in double; clamping to [lo - 1, hi + 1] keeps the value in int64 range and still
   counts as saturated; the cast truncates toward zero, so negative non-integers step down by one (floor). */
static int64_t quantize_input(double u, const Case *c, int64_t *count) {
    double scale = 1.0, hi = (double)(((int64_t)1 << (c->msg_bits - 1)) - 1), lo = -hi - 1.0;
    for (long e = 0; e < c->inp_exp; ++e) scale *= 2.0;
    for (long e = 0; e > c->inp_exp; --e) scale *= 0.5;
    double x = u * scale + (c->half_up ? 0.5 : 0.0);
    if (x > hi + 1.0) x = hi + 1.0;
    if (x < lo - 1.0) x = lo - 1.0;
    int64_t q = (int64_t)x;
    if ((double)q > x) q -= 1;
    return sat(q, c->msg_bits, count);
}

/* ------------------------------------------------------------------ one time step, SPEC.md 14.3 */

/* One step of one stream: u_q (d_input) in, logits (n_classes) out; h and r are (H) work buffers. */
static void step(const Case *c, const int64_t *W_enc, Layer *layers, const int64_t *W_dec, const int64_t *u_q,
                 int64_t *h, int64_t *r, int64_t *logits, int64_t *cnt) {
    const long H = c->H, P = c->P, M = c->msg_bits, S = c->state_bits, F = c->frac_bits;
    const int hu = (int)c->half_up;
    /* 2. encoder: h_0 = sat_M(R(W_enc u_q, s_enc)), no activation */
    for (long j = 0; j < H; ++j) {
        int64_t acc = 0;
        for (long d = 0; d < c->d_input; ++d) acc += W_enc[j * c->d_input + d] * u_q[d];
        h[j] = sat(rescale(acc, c->shift_encoder, hu), M, &cnt[CNT_ENCODER]);
    }
    for (long i = 0; i < c->n_layers; ++i) {
        Layer *ly = &layers[i];
        int64_t *cl = &cnt[CNT_LAYERS + CNT_PER_LAYER * i];
        for (long j = 0; j < H; ++j) {
            const int64_t v = h[j]; /* channel j fanned out to its P mode neurons */
            int64_t y = 0;
            for (long p = 0; p < P; ++p) {
                const long n = j * P + p;
                /* 3a. state: update first, x = sat_S(R(Abar x + Bbar v, F)), both parts from the old x */
                const int64_t pr = ly->ar[n] * ly->xr[n] - ly->ai[n] * ly->xi[n] + ly->br[n] * v;
                const int64_t pi = ly->ar[n] * ly->xi[n] + ly->ai[n] * ly->xr[n] + ly->bi[n] * v;
                ly->xr[n] = SAT_STATE(rescale(pr, F, hu), S, &cl[CNT_STATE]);
                ly->xi[n] = SAT_STATE(rescale(pi, F, hu), S, &cl[CNT_STATE]);
                /* 3b. neuron: ... then output o = sat_M(R(cr xr - ci xi, F - 1)), i.e. 2 Re(C x) */
                const int64_t o = rescale(ly->cr[n] * ly->xr[n] - ly->ci[n] * ly->xi[n], F - 1, hu);
                /* 3c. fan-in: y_i = sum over the P neurons */
                y += sat(o, M, &cl[CNT_MESSAGE]);
            }
            if (c->use_D) y += rescale(ly->D[j] * v, F, hu);
            ly->y[j] = y;
            /* 3d. activation: r = sat_M(max(y, 0)), or sat_M(y) for the identity */
            r[j] = sat(c->relu && y < 0 ? 0 : y, M, &cl[CNT_RELU]);
        }
        /* 3e. mixing: h_{i+1} = sat_M(max(R(W_i r, s_i), 0)) */
        for (long j = 0; j < H; ++j) {
            int64_t acc = 0;
            for (long l = 0; l < H; ++l) acc += ly->W[j * H + l] * r[l];
            const int64_t mix = rescale(acc, c->shift_mixer[i], hu);
            h[j] = sat(c->relu && mix < 0 ? 0 : mix, M, &cl[CNT_BLOCK]);
        }
    }
    /* 4. decoder: logits = sat_M(R(W_dec h_n, s_dec)) */
    for (long k = 0; k < c->n_classes; ++k) {
        int64_t acc = 0;
        for (long j = 0; j < H; ++j) acc += W_dec[k * H + j] * h[j];
        logits[k] = sat(rescale(acc, c->shift_decoder, hu), M, &cnt[CNT_DECODER]);
    }
}

/* ------------------------------------------------------------------ files */

/* root/sub/name.bin, exactly count elements of elem_size bytes. */
static void *read_bin(const char *root, const char *sub, const char *name, size_t count, size_t elem_size) {
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s/%s.bin", root, sub, name);
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s (%s)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    if (size < 0 || (size_t)size != count * elem_size)
        die("%s has %ld bytes, expected %zu (%zu elements of %zu bytes)", path, size, count * elem_size, count,
            elem_size);
    void *data = alloc(count, elem_size);
    if (fread(data, elem_size, count, f) != count) die("cannot read %s", path);
    fclose(f);
    return data;
}

/* mkdir -p of a folder path (modified in place, restored). */
static void make_dirs(char *path) {
    for (char *p = path + 1;; ++p) {
        if (*p == '/' || *p == '\0') {
            char keep = *p;
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST) die("cannot create folder %s (%s)", path, strerror(errno));
            *p = keep;
            if (keep == '\0') return;
        }
    }
}

/* out/<case id>/name.bin, as verify reads it (the layout of the expected files). */
static void write_bin(const char *out, const Case *c, const char *name, const int64_t *data, size_t count) {
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", out, c->id);
    make_dirs(path);
    snprintf(path, sizeof path, "%s/%s/%s.bin", out, c->id, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, sizeof *data, count, f) != count || fclose(f) != 0)
        die("cannot write %s (%s)", path, strerror(errno));
}

static long parse_long(const char *text, const char *key, const char *id) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end) die("cases.txt, case %s: %s = '%s' is not an integer", id, key, text);
    return v;
}

/* The next block of cases.txt into c; 0 at the end of the file. */
static int read_case(FILE *f, Case *c) {
    char line[1024], key[64], val[512];
    int started = 0;
    memset(c, 0, sizeof *c);
    while (fgets(line, sizeof line, f)) {
        int n = sscanf(line, "%63s %511s", key, val);
        if (n < 1 || key[0] == '#') continue;
        if (!strcmp(key, "end")) {
            if (!started) die("cases.txt: 'end' without 'case'");
            return 1;
        }
        if (n < 2) die("cases.txt, case %s: '%s' has no value", c->id, key);
        if (!strcmp(key, "case")) {
            snprintf(c->id, sizeof c->id, "%s", val);
            started = 1;
        } else if (!strcmp(key, "case_dir")) {
            snprintf(c->case_dir, sizeof c->case_dir, "%s", val);
        } else if (!strcmp(key, "model_dir")) {
            snprintf(c->model_dir, sizeof c->model_dir, "%s", val);
        } else if (!strncmp(key, "shift_mixer", 11)) {
            long i = parse_long(key + 11, key, c->id);
            if (i < 0 || i >= MAX_LAYERS) die("cases.txt, case %s: %s: at most %d layers", c->id, key, MAX_LAYERS);
            c->shift_mixer[i] = parse_long(val, key, c->id);
        } else {
            size_t k = 0, n_fields = sizeof FIELDS / sizeof FIELDS[0];
            while (k < n_fields && strcmp(key, FIELDS[k].key)) ++k;
            if (k == n_fields) die("cases.txt, case %s: unknown key '%s'", c->id, key);
            *(long *)((char *)c + FIELDS[k].offset) = parse_long(val, key, c->id);
        }
    }
    if (started) die("cases.txt: case %s has no 'end'", c->id);
    return 0;
}

/* Indices must be ascending and below `limit` (the recording below walks them in order). */
static void check_indices(const Case *c, const char *name, const int64_t *a, long n, long limit) {
    for (long t = 0; t < n; ++t)
        if (a[t] < 0 || a[t] >= limit || (t && a[t] <= a[t - 1]))
            die("case %s: %s[%ld] = %lld is not an ascending index below %ld", c->id, name, t, (long long)a[t],
                limit);
}

/* ------------------------------------------------------------------ one case */

static void run_case(const char *dir, const char *out, const Case *c) {
    if (c->n_layers < 1 || c->n_layers > MAX_LAYERS || c->msg_bits < 2 || c->msg_bits > 32 || c->state_bits < 2 ||
        c->state_bits > 32 || c->frac_bits < 1 || c->N < 1 || c->L < 1 || c->H < 1 || c->P < 1 || c->d_input < 1)
        die("case %s: sizes or format out of range (SPEC.md 14.1)", c->id);
    const long N = c->N, L = c->L, D = c->d_input, H = c->H, P = c->P, C = c->n_classes;
    const long T = c->n_steps, K = c->n_channels, S = c->n_state_steps;
    const long n_cnt = CNT_LAYERS + CNT_PER_LAYER * c->n_layers;
    char name[64];
    int64_t *W_enc = read_bin(dir, c->model_dir, "encoder.W", H * D, 8);
    int64_t *W_dec = read_bin(dir, c->model_dir, "decoder.W", C * H, 8);
    Layer layers[MAX_LAYERS];
    for (long i = 0; i < c->n_layers; ++i) {
        const char *parts[] = {"Abar_re", "Abar_im", "Bbar_re", "Bbar_im", "C_re", "C_im"};
        int64_t **dst[] = {&layers[i].ar, &layers[i].ai, &layers[i].br, &layers[i].bi, &layers[i].cr, &layers[i].ci};
        for (int k = 0; k < 6; ++k) {
            snprintf(name, sizeof name, "layer%ld.%s", i, parts[k]);
            *dst[k] = read_bin(dir, c->model_dir, name, H * P, 8);
        }
        snprintf(name, sizeof name, "layer%ld.W", i);
        layers[i].W = read_bin(dir, c->model_dir, name, H * H, 8);
        snprintf(name, sizeof name, "layer%ld.D", i);
        layers[i].D = c->use_D ? read_bin(dir, c->model_dir, name, H, 8) : NULL;
        layers[i].xr = alloc(H * P, 8);
        layers[i].xi = alloc(H * P, 8);
        layers[i].y = alloc(H, 8);
    }
    double *u = read_bin(dir, c->case_dir, "u", N * L * D, 8);
    int64_t *steps = read_bin(dir, c->case_dir, "steps", T, 8);
    int64_t *channels = read_bin(dir, c->case_dir, "channels", K, 8);
    int64_t *state_steps = read_bin(dir, c->case_dir, "state_steps", S, 8);
    check_indices(c, "steps", steps, T, L);
    check_indices(c, "state_steps", state_steps, S, L);
    for (long k = 0; k < K; ++k)
        if (channels[k] < 0 || channels[k] >= H) die("case %s: channels[%ld] is not below H = %ld", c->id, k, H);

    /* the outputs, in the layout of the expected files (index.json) */
    int64_t *u_q = alloc(N * L * D, 8), *logits = alloc(N * C, 8), *step_logits = alloc(N * T * C, 8);
    int64_t *y[MAX_LAYERS], *st_re[MAX_LAYERS], *st_im[MAX_LAYERS], *cnt = alloc(n_cnt, 8);
    for (long i = 0; i < c->n_layers; ++i) {
        y[i] = alloc(N * T * K, 8);
        st_re[i] = alloc(S * K * P, 8);
        st_im[i] = alloc(S * K * P, 8);
    }
    int64_t *h = alloc(H, 8), *r = alloc(H, 8), *lg = alloc(C, 8);
    for (long n = 0; n < N; ++n) { /* streams are independent; the counters sum over all of them */
        for (long i = 0; i < c->n_layers; ++i) {
            memset(layers[i].xr, 0, H * P * 8); /* the initial state is 0 */
            memset(layers[i].xi, 0, H * P * 8);
        }
        long t = 0, s = 0;
        for (long k = 0; k < L; ++k) {
            int64_t *uq = &u_q[(n * L + k) * D];
            for (long d = 0; d < D; ++d) uq[d] = quantize_input(u[(n * L + k) * D + d], c, &cnt[CNT_INPUT]);
            step(c, W_enc, layers, W_dec, uq, h, r, lg, cnt);
            if (t < T && steps[t] == k) {
                memcpy(&step_logits[(n * T + t) * C], lg, C * 8);
                for (long i = 0; i < c->n_layers; ++i)
                    for (long q = 0; q < K; ++q) y[i][(n * T + t) * K + q] = layers[i].y[channels[q]];
                ++t;
            }
            if (n == 0 && s < S && state_steps[s] == k) { /* states of the first stream only */
                for (long i = 0; i < c->n_layers; ++i)
                    for (long q = 0; q < K; ++q)
                        for (long p = 0; p < P; ++p) {
                            st_re[i][(s * K + q) * P + p] = layers[i].xr[channels[q] * P + p];
                            st_im[i][(s * K + q) * P + p] = layers[i].xi[channels[q] * P + p];
                        }
                ++s;
            }
        }
        memcpy(&logits[n * C], lg, C * 8); /* readout "last" */
    }
    write_bin(out, c, "u_q", u_q, N * L * D);
    write_bin(out, c, "logits", logits, N * C);
    write_bin(out, c, "step_logits", step_logits, N * T * C);
    for (long i = 0; i < c->n_layers; ++i) {
        snprintf(name, sizeof name, "layer%ld.y", i);
        write_bin(out, c, name, y[i], N * T * K);
        snprintf(name, sizeof name, "layer%ld.state_re", i);
        write_bin(out, c, name, st_re[i], S * K * P);
        snprintf(name, sizeof name, "layer%ld.state_im", i);
        write_bin(out, c, name, st_im[i], S * K * P);
        free(y[i]), free(st_re[i]), free(st_im[i]);
        free(layers[i].ar), free(layers[i].ai), free(layers[i].br), free(layers[i].bi), free(layers[i].cr);
        free(layers[i].ci), free(layers[i].W), free(layers[i].D), free(layers[i].xr), free(layers[i].xi);
        free(layers[i].y);
    }
    write_bin(out, c, "saturations", cnt, n_cnt);
    free(W_enc), free(W_dec), free(u), free(steps), free(channels), free(state_steps), free(u_q), free(logits);
    free(step_logits), free(cnt), free(h), free(r), free(lg);
}

int main(int argc, char **argv) {
    const uint16_t one = 1;
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR OUT  (DIR: `s4dconf vectors export DIR --numeric-class fixed-point`)\n",
                argv[0]);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) die("this program reads little-endian files on a little-endian host");
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/cases.txt", argv[1]);
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s (%s); export fixed-point vectors there first", path, strerror(errno));
    Case c;
    long n_cases = 0;
    while (read_case(f, &c)) {
        run_case(argv[1], argv[2], &c);
        ++n_cases;
    }
    fclose(f);
    printf("s4d_fxp: %ld cases written to %s\n", n_cases, argv[2]);
    return 0;
}
