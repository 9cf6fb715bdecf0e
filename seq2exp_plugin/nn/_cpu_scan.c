/*
 * CPU selective scan (Mamba-1 recurrence) for seq2exp_plugin: forward and backward.
 *
 * Built at first use by seq2exp_plugin/nn/_build.py, twice from this one source:
 * -DSCAN_DOUBLE=0 (float32, exported names *_f32) and -DSCAN_DOUBLE=1 (float64, *_f64).
 * The file includes itself (SCAN_SECTION) to stamp out the inner kernels for d_state 16 and 8
 * (state kept in registers) and once for any d_state <= SCAN_NSMAX.
 *
 * Math, per batch b, channel d, state n (see seq2exp_plugin/nn/scan.py):
 *   dt = delta + bias;  dt = softplus(dt) if asked
 *   h_n = exp(dt * A_dn) * h_n + dt * B_n * u
 *   y   = (sum_n C_n * h_n + D * u) * silu(z)
 *
 * Layout: u, delta, z, y and their gradients have unit stride along channels (the
 * "channels-last" layout the Mamba block produces); B and C have unit stride along states.
 * Time strides are free and may be negative: the Python side implements reverse=True by
 * pointing at t = L-1 and negating the time strides, so the kernel always runs "forward".
 * Vectorisation: one SIMD vector holds W consecutive channels; states are unrolled.
 * Threads (pthreads, not OpenMP: no second OpenMP runtime next to torch's, nothing to link
 * on macOS): the forward splits (batch, channel-vector) items, the backward (batch,
 * channel-group) units; partial sums of the gradients of B, C (reduced over channels) and
 * A, D, bias (reduced over the batch, in double) are added up by scan_bwd at the end.
 * Backward memory: the forward stores the state every `ck_every` steps; the backward
 * recomputes each chunk of ck_every steps from its checkpoint, then runs it in reverse.
 * Built with -O3 -march=native -ffp-contract=fast (no -ffast-math: the exp relies on exact
 * rounding tricks). Float32 results agree with float64 to about 2e-7 (relative to the
 * largest value of each output or gradient).
 */
#ifndef SCAN_SECTION

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifndef SCAN_DOUBLE
#define SCAN_DOUBLE 0
#endif

#if SCAN_DOUBLE
typedef double real;
typedef int64_t ireal;
typedef uint64_t ureal;
#define SFX(name) name##_f64
#define MANT_BITS 52
#define EXP_MAGIC 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer */
#define EXP2_LO (-1021.0)            /* portable path: 2^k * p(f) stays a normal number */
#define EXP2_HI (1023.0)
#else
typedef float real;
typedef int32_t ireal;
typedef uint32_t ureal;
#define SFX(name) name##_f32
#define MANT_BITS 23
#define EXP_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define EXP2_LO (-125.0f)
#define EXP2_HI (127.0f)
#endif

#if defined(__AVX512F__)
#define VBYTES 64
#else
#define VBYTES 32
#endif
#define W ((int)(VBYTES / sizeof(real)))
#define SCAN_NSMAX 64
#define SCAN_TB 16 /* time steps per block in the forward */

typedef real vec __attribute__((vector_size(VBYTES)));
typedef ireal vi __attribute__((vector_size(VBYTES)));
typedef ureal vu __attribute__((vector_size(VBYTES)));
typedef double vd __attribute__((vector_size(W * 8))); /* double accumulators, W lanes */

#define AI static inline __attribute__((always_inline))
#define LOG2E ((real)1.4426950408889634074)

/* ---------------------------------------------------------------- vector helpers */
AI vec vsplat(real x) { return (vec){0} + x; }

AI vec ldp(const real *p, const int nv) {
    vec r;
    if (nv == W) {
        memcpy(&r, p, sizeof r);
    } else {
        r = (vec){0};
        for (int i = 0; i < nv; i++) r[i] = p[i];
    }
    return r;
}

AI void stp(real *p, vec v, const int nv) {
    if (nv == W) {
        memcpy(p, &v, sizeof v);
    } else {
        for (int i = 0; i < nv; i++) p[i] = v[i];
    }
}

AI vec vsel(vi m, vec a, vec b) { return (vec)(((vu)a & (vu)m) | ((vu)b & ~(vu)m)); }
AI vec vabs(vec x) { return (vec)((vu)x & ~((vu){0} + ((ureal)1 << (sizeof(real) * 8 - 1)))); }

/* exp2 polynomial: 2^f for |f| <= 1/2, minimax fitted for this kernel (float: degree 6, max
 * rel. error 2e-8 with float coefficients; double: degree 11, 2e-17). */
AI vec exp2_poly(vec f) {
#if SCAN_DOUBLE
    vec p = vsplat(4.455817908336064493e-10);
    p = p * f + 7.0741942972885210056e-9;
    p = p * f + 1.0178057087733941105e-7;
    p = p * f + 1.3215432535912376166e-6;
    p = p * f + 1.5252733841556772589e-5;
    p = p * f + 1.5403530463724354209e-4;
    p = p * f + 1.3333558146406470697e-3;
    p = p * f + 9.6181291075872566681e-3;
    p = p * f + 5.5504108664821627039e-2;
    p = p * f + 2.4022650695910159567e-1;
    p = p * f + 6.9314718055994530925e-1;
    p = p * f + 1.0;
#else
    vec p = vsplat(1.5461444698569129083e-4f);
    p = p * f + 1.340042817761583794e-3f;
    p = p * f + 9.6180566785246380754e-3f;
    p = p * f + 5.5503272266703020589e-2f;
    p = p * f + 2.4022650922288758071e-1f;
    p = p * f + 6.9314720670283259577e-1f;
    p = p * f + 1.0f;
#endif
    return p;
}

#if defined(__AVX512F__)
/* AVX-512: scalef multiplies by 2^floor(k) with correct overflow (inf), underflow (0, with
 * flush-to-zero) and NaN handling. */
#if SCAN_DOUBLE
/* 2^x = 2^k 2^f, k = round(x) (one instruction), 2^f by the degree-11 polynomial. */
AI vec vexp2(vec x) {
    const vec k = (vec)_mm512_roundscale_pd((__m512d)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return (vec)_mm512_scalef_pd((__m512d)exp2_poly(x - k), (__m512d)k);
}
#else
/* 2^x = 2^floor(n/16) * 2^((n mod 16)/16) * 2^f with n = round(16 x), |f| <= 1/32: the
 * middle factor from a 16-entry table held in one register (a lane permute), 2^f by a
 * degree-3 minimax polynomial (rel. error 1.2e-9). Adding 1.5 * 2^19 rounds x to a multiple
 * of 1/16 and leaves n in the low bits (the permute reads the low 4). About 1 ulp overall;
 * fewer multiply-adds than a degree-6 polynomial on |f| <= 1/2, which is what bounds the
 * forward scan. Valid for |x| < 2^18 (the scan's dt * A is far inside that). */
AI vec vexp2(vec x) {
    const __m512 tab = _mm512_setr_ps(
        1.0f, 1.0442737824274138f, 1.0905077326652577f, 1.1387886347566916f,
        1.1892071150027210f, 1.2418578120734840f, 1.2968395546510096f, 1.3542555469368927f,
        1.4142135623730951f, 1.4768261459394993f, 1.5422108254079407f, 1.6104903319492543f,
        1.6817928305074290f, 1.7562521603732995f, 1.8340080864093424f, 1.9152065613971474f);
    const vec t = x + 786432.0f; /* 1.5 * 2^19 */
    const vec k16 = t - 786432.0f;
    const vec f = x - k16;
    vec p = f * 5.550541078283726e-2f + 2.4023589979184537e-1f;
    p = p * f + 6.931471804009951e-1f;
    p = p * f + 1.0f;
    const vec T = (vec)_mm512_permutexvar_ps((__m512i)t, tab);
    return (vec)_mm512_scalef_ps((__m512)(p * T), (__m512)k16);
}
#endif
#else
#if defined(__AVX__) && VBYTES == 32
#if SCAN_DOUBLE
AI vec vmaxc(vec x, vec lo) { return (vec)_mm256_max_pd((__m256d)x, (__m256d)lo); }
AI vec vminc(vec x, vec hi) { return (vec)_mm256_min_pd((__m256d)x, (__m256d)hi); }
#else
AI vec vmaxc(vec x, vec lo) { return (vec)_mm256_max_ps((__m256)x, (__m256)lo); }
AI vec vminc(vec x, vec hi) { return (vec)_mm256_min_ps((__m256)x, (__m256)hi); }
#endif
#else
AI vec vmaxc(vec x, vec lo) { return vsel(x < lo, lo, x); }
AI vec vminc(vec x, vec hi) { return vsel(x > hi, hi, x); }
#endif
/* Portable 2^x: clamped to [EXP2_LO, EXP2_HI] (a large negative argument gives ~1e-38 in
 * float rather than 0: harmless next to the O(1) terms it is added to, and no denormals);
 * k = round(x) by adding and subtracting 1.5 * 2^mantissa_bits; 2^k by adding k to the
 * exponent bits. */
AI vec vexp2(vec x) {
    x = vmaxc(x, vsplat(EXP2_LO));
    x = vminc(x, vsplat(EXP2_HI));
    const vec t = x + EXP_MAGIC;
    const vec kf = t - EXP_MAGIC;
    const vec p = exp2_poly(x - kf);
    return (vec)((vu)p + ((vu)t << MANT_BITS));
}
#endif

AI vec vexp(vec x) { return vexp2(x * LOG2E); }

/* softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1];
 * log1p(e) = 2 atanh(s), s = e / (2 + e) in (0, 1/3]; atanh(s) = s R(s^2), R minimax.
 * Accurate in relative terms for tiny e (no cancellation). */
AI vec vsoftplus(vec x) {
    const vec ax = vabs(x);
    const vec e = vexp2(ax * (-LOG2E));
    const vec s = e / (2 + e);
    const vec q = s * s;
#if SCAN_DOUBLE
    vec r = vsplat(8.5220817813906990645e-2);
    r = r * q + 4.1622532559304102879e-2;
    r = r * q + 6.0550843640346088273e-2;
    r = r * q + 6.6501870163373121685e-2;
    r = r * q + 7.6933070211520038808e-2;
    r = r * q + 9.0908704162524022551e-2;
    r = r * q + 1.1111112040373836587e-1;
    r = r * q + 1.4285714272727057267e-1;
    r = r * q + 2.0000000000092873734e-1;
    r = r * q + 3.3333333333333074797e-1;
    r = r * q + 1.0;
#else
    vec r = vsplat(1.4078889181554540327e-1f);
    r = r * q + 1.3982578872598634444e-1f;
    r = r * q + 2.0012297615351873956e-1f;
    r = r * q + 3.3333160820688886578e-1f;
    r = r * q + 1.0f;
#endif
    return (x + ax) * (real)0.5 + (s + s) * r;
}

AI vec vsigmoid(vec x) { return 1 / (1 + vexp2(x * (-LOG2E))); }

AI real hsum(vec v) {
    real s = 0;
    for (int i = 0; i < W; i++) s += v[i];
    return s;
}

/* ---------------------------------------------------------------- arguments */
typedef struct {
    int64_t batch, dim, len, nstate;
    int64_t nthreads;
    int64_t ck_every; /* checkpoint interval K (> 0); ck may be NULL in forward */
    int64_t softplus;
    int64_t groups; /* backward: channel groups per batch (partial buffers of gB, gC) */
    const void *u;     int64_t u_sb, u_st;
    const void *delta; int64_t dl_sb, dl_st;
    const void *z;     int64_t z_sb, z_st;
    const void *B;     int64_t B_sb, B_st;
    const void *C;     int64_t C_sb, C_st;
    const void *A;     /* (nstate, dim) contiguous */
    const void *D;     /* (dim) or NULL */
    const void *bias;  /* (dim) or NULL */
    void *ck;          /* (batch, nck, nstate, dim) contiguous, or NULL */
    void *y;           int64_t y_sb, y_st;
    const void *gy;    int64_t gy_sb, gy_st;
    void *gu;          int64_t gu_sb, gu_st;
    void *gdelta;      int64_t gd_sb, gd_st;
    void *gz;          int64_t gz_sb, gz_st;
    void *gB;          int64_t gB_sg, gB_sb, gB_st; /* (groups, batch, len, nstate) */
    void *gC;          int64_t gC_sg, gC_sb, gC_st;
    void *gA;          /* (dim, nstate) contiguous */
    void *gD;          /* (dim) or NULL */
    void *gbias;       /* (dim) or NULL */
    /* internal (set by scan_bwd): per-batch partial sums, double */
    double *pA;        /* (batch, nstate, dim) */
    double *pD;        /* (batch, dim) */
    double *pb;        /* (batch, dim) */
} scan_args;

/* Backward scratch, per thread. rec holds, for each step kk of a chunk, 4 * ns vectors:
 * q = exp(dt A) h_{t-1}, e = exp(dt A), and the gB and gC partial sums (over the unit's
 * channel vectors) - interleaved per step so that the four streams sit 1 KiB apart
 * (separate 4 KiB-aligned arrays made loads falsely wait on stores: 4K aliasing). */
typedef struct {
    vec *rec, *dt, *gy0, *sgd, *sgz, *gcarry, *gAl;
    vd *gA, *gD, *gb;
} bwd_scratch;

static void *alloc_aligned(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

/* ---------------------------------------------------------------- kernels, per d_state */
#define SCAN_SECTION 1
#define NSA 16
#define KS(name) name##_ns16
#include __FILE__
#undef NSA
#undef KS
#define NSA 8
#define KS(name) name##_ns8
#include __FILE__
#undef NSA
#undef KS
#define NSA SCAN_NSMAX
#define KS(name) name##_nsany
#include __FILE__
#undef NSA
#undef KS
#undef SCAN_SECTION

/* ---------------------------------------------------------------- threads */
typedef struct {
    const void *a; /* the kernel's arguments (scan_args or conv_args) */
    int tid, nth, err;
} job_t;

#if defined(__x86_64__) || defined(__i386__)
#define FP_ENTER unsigned int csr_saved__ = _mm_getcsr(); _mm_setcsr(csr_saved__ | 0x8040u);
#define FP_LEAVE _mm_setcsr(csr_saved__);
#elif defined(__aarch64__)
#define FP_ENTER uint64_t fpcr_saved__; __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr_saved__)); \
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr_saved__ | (1ull << 24)));
#define FP_LEAVE __asm__ volatile("msr fpcr, %0" ::"r"(fpcr_saved__));
#else
#define FP_ENTER
#define FP_LEAVE
#endif

static int run_threads(void *(*fn)(void *), const void *a, int64_t nth_req) {
    int nth = nth_req < 1 ? 1 : (nth_req > 256 ? 256 : (int)nth_req);
    job_t jobs[256];
    pthread_t th[256];
    int started[256];
    for (int i = 0; i < nth; i++) {
        jobs[i].a = a; jobs[i].tid = i; jobs[i].nth = nth; jobs[i].err = 0;
        started[i] = 0;
    }
    for (int i = 1; i < nth; i++) started[i] = pthread_create(&th[i], NULL, fn, &jobs[i]) == 0;
    fn(&jobs[0]);
    for (int i = 1; i < nth; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else fn(&jobs[i]); /* could not start a thread: do its share here */
    }
    int err = 0;
    for (int i = 0; i < nth; i++) err |= jobs[i].err;
    return err;
}

/* ---------------------------------------------------------------- forward */
/* Each thread takes a contiguous range of items (channel vectors of one or more batch rows,
 * each over the whole sequence); its items advance together tile by tile, so that a tile's B
 * and C rows are read from cache. (Claiming smaller groups dynamically, to balance threads
 * slowed by other processes, measured 7-15% slower here: fewer items share each tile.) */
static void *fwd_thread(void *arg) {
    job_t *j = (job_t *)arg;
    const scan_args *a = j->a;
    FP_ENTER
    const int64_t d = a->dim, L = a->len, ns = a->nstate;
    const int64_t nvec = (d + W - 1) / W, items = a->batch * nvec;
    const int64_t i0 = items * j->tid / j->nth, i1 = items * (j->tid + 1) / j->nth;
    if (i0 < i1) {
        vec *hs = (vec *)alloc_aligned((size_t)(i1 - i0) * ns * sizeof(vec));
        if (!hs) {
            j->err = 1;
        } else {
            memset(hs, 0, (size_t)(i1 - i0) * ns * sizeof(vec));
            const int64_t K = a->ck_every;
            int64_t TT = 1024; /* time tile */
            if (a->ck) TT = ((TT + K - 1) / K) * K;
            for (int64_t t0 = 0; t0 < L; t0 += TT) {
                const int64_t t1 = t0 + TT < L ? t0 + TT : L;
                for (int64_t it = i0; it < i1; it++) {
                    const int64_t b = it / nvec, v = it % nvec;
                    const int nv = (int)(d - v * W < W ? d - v * W : W);
                    vec *h = hs + (it - i0) * ns;
                    if (ns == 16) {
                        if (nv == W) fwd_tile_full_ns16(a, b, v, t0, t1, h);
                        else fwd_tile_part_ns16(a, b, v, t0, t1, h, nv);
                    } else if (ns == 8) {
                        if (nv == W) fwd_tile_full_ns8(a, b, v, t0, t1, h);
                        else fwd_tile_part_ns8(a, b, v, t0, t1, h, nv);
                    } else {
                        if (nv == W) fwd_tile_full_nsany(a, b, v, t0, t1, h);
                        else fwd_tile_part_nsany(a, b, v, t0, t1, h, nv);
                    }
                }
            }
            free(hs);
        }
    }
    FP_LEAVE
    return NULL;
}

int SFX(scan_fwd)(const scan_args *a) {
    if (a->nstate < 1 || a->nstate > SCAN_NSMAX || a->ck_every < 1) return 2;
    if (a->len == 0 || a->dim == 0 || a->batch == 0) return 0;
    return run_threads(fwd_thread, a, a->nthreads);
}

/* ---------------------------------------------------------------- backward */
static void bwd_unit(const scan_args *a, int64_t b, int64_t g, int64_t v0, int64_t v1,
                     bwd_scratch *s) {
    const int64_t d = a->dim, L = a->len, ns = a->nstate, K = a->ck_every;
    const int64_t nck = (L + K - 1) / K, nvu = v1 - v0;
    memset(s->gcarry, 0, (size_t)nvu * ns * sizeof(vec));
    memset(s->gA, 0, (size_t)nvu * ns * sizeof(vd));
    memset(s->gD, 0, (size_t)nvu * sizeof(vd));
    memset(s->gb, 0, (size_t)nvu * sizeof(vd));
    real *gBb = (real *)a->gB + g * a->gB_sg + b * a->gB_sb;
    real *gCb = (real *)a->gC + g * a->gC_sg + b * a->gC_sb;
    for (int64_t c = nck - 1; c >= 0; c--) {
        const int64_t t0 = c * K, len = (t0 + K < L ? K : L - t0);
        for (int64_t k = 0; k < len; k++)
            memset(s->rec + (4 * k + 2) * ns, 0, 2 * (size_t)ns * sizeof(vec));
        for (int64_t v = v0; v < v1; v++) {
            const int nv = (int)(d - v * W < W ? d - v * W : W);
            vec *gc = s->gcarry + (v - v0) * ns;
            vd *gA = s->gA + (v - v0) * ns, *gD = s->gD + (v - v0), *gb = s->gb + (v - v0);
            if (ns == 16) {
                if (nv == W) bwd_chunk_full_ns16(a, b, v, c, len, s, gc, gA, gD, gb);
                else bwd_chunk_part_ns16(a, b, v, c, len, s, gc, gA, gD, gb, nv);
            } else if (ns == 8) {
                if (nv == W) bwd_chunk_full_ns8(a, b, v, c, len, s, gc, gA, gD, gb);
                else bwd_chunk_part_ns8(a, b, v, c, len, s, gc, gA, gD, gb, nv);
            } else {
                if (nv == W) bwd_chunk_full_nsany(a, b, v, c, len, s, gc, gA, gD, gb);
                else bwd_chunk_part_nsany(a, b, v, c, len, s, gc, gA, gD, gb, nv);
            }
        }
        for (int64_t k = 0; k < len; k++) {
            real *rb = gBb + (t0 + k) * a->gB_st, *rc = gCb + (t0 + k) * a->gC_st;
            const vec *ab = s->rec + (4 * k + 2) * ns, *ac = ab + ns;
            for (int64_t n = 0; n < ns; n++) {
                rb[n] = hsum(ab[n]);
                rc[n] = hsum(ac[n]);
            }
        }
    }
    for (int64_t v = v0; v < v1; v++) {
        const int64_t ch = v * W;
        const int nv = (int)(d - ch < W ? d - ch : W);
        for (int64_t n = 0; n < ns; n++) {
            double *dst = a->pA + (b * ns + n) * d + ch;
            const vd acc = s->gA[(v - v0) * ns + n];
            for (int i = 0; i < nv; i++) dst[i] = acc[i];
        }
        for (int i = 0; i < nv; i++) a->pD[b * d + ch + i] = s->gD[v - v0][i];
        for (int i = 0; i < nv; i++) a->pb[b * d + ch + i] = s->gb[v - v0][i];
    }
}

static void *bwd_thread(void *arg) {
    job_t *j = (job_t *)arg;
    const scan_args *a = j->a;
    FP_ENTER
    const int64_t d = a->dim, ns = a->nstate, K = a->ck_every, G = a->groups;
    const int64_t nvec = (d + W - 1) / W, units = a->batch * G;
    const int64_t u0 = units * j->tid / j->nth, u1 = units * (j->tid + 1) / j->nth;
    if (u0 < u1) {
        const int64_t maxv = (nvec + G - 1) / G;
        bwd_scratch s;
        s.rec = alloc_aligned((size_t)K * 4 * ns * sizeof(vec));
        s.dt = alloc_aligned((size_t)K * sizeof(vec));
        s.gy0 = alloc_aligned((size_t)K * sizeof(vec));
        s.sgd = alloc_aligned((size_t)K * sizeof(vec));
        s.sgz = alloc_aligned((size_t)K * sizeof(vec));
        s.gcarry = alloc_aligned((size_t)maxv * ns * sizeof(vec));
        s.gAl = alloc_aligned((size_t)ns * sizeof(vec));
        s.gA = alloc_aligned((size_t)maxv * ns * sizeof(vd));
        s.gD = alloc_aligned((size_t)maxv * sizeof(vd));
        s.gb = alloc_aligned((size_t)maxv * sizeof(vd));
        if (!s.rec || !s.dt || !s.gy0 || !s.sgd || !s.sgz || !s.gcarry || !s.gAl || !s.gA ||
            !s.gD || !s.gb) {
            j->err = 1;
        } else {
            for (int64_t un = u0; un < u1; un++) {
                const int64_t b = un / G, g = un % G;
                bwd_unit(a, b, g, nvec * g / G, nvec * (g + 1) / G, &s);
            }
        }
        free(s.rec); free(s.dt); free(s.gy0); free(s.sgd); free(s.sgz); free(s.gcarry);
        free(s.gAl);
        free(s.gA); free(s.gD); free(s.gb);
    }
    FP_LEAVE
    return NULL;
}

int SFX(scan_bwd)(const scan_args *a) {
    const int64_t nvec = (a->dim + W - 1) / W;
    if (a->nstate < 1 || a->nstate > SCAN_NSMAX || a->ck_every < 1) return 2;
    if (a->len > 0 && a->dim > 0 && a->batch > 0 && !a->ck) return 2;
    if (a->groups < 1 || a->groups > (nvec > 0 ? nvec : 1)) return 3;
    const int64_t batch = a->batch, d = a->dim, L = a->len, ns = a->nstate, G = a->groups;
    scan_args w = *a;
    w.pA = (double *)calloc((size_t)(batch * ns * d + 2 * batch * d + 1), sizeof(double));
    if (!w.pA) return 1;
    w.pD = w.pA + batch * ns * d;
    w.pb = w.pD + batch * d;
    int err = 0;
    if (L > 0 && d > 0 && batch > 0) err = run_threads(bwd_thread, &w, a->nthreads);
    if (!err) {
        /* gB, gC: add the channel groups' partial sums into group 0 */
        for (int64_t g = 1; g < G; g++)
            for (int64_t b = 0; b < batch; b++)
                for (int64_t t = 0; t < L; t++) {
                    real *dB = (real *)a->gB + b * a->gB_sb + t * a->gB_st;
                    real *dC = (real *)a->gC + b * a->gC_sb + t * a->gC_st;
                    const real *sB = dB + g * a->gB_sg, *sC = dC + g * a->gC_sg;
                    for (int64_t n = 0; n < ns; n++) {
                        dB[n] += sB[n];
                        dC[n] += sC[n];
                    }
                }
        if (d == 0) /* no channel wrote gB, gC */
            for (int64_t b = 0; b < batch; b++)
                for (int64_t t = 0; t < L; t++)
                    for (int64_t n = 0; n < ns; n++) {
                        ((real *)a->gB)[b * a->gB_sb + t * a->gB_st + n] = 0;
                        ((real *)a->gC)[b * a->gC_sb + t * a->gC_st + n] = 0;
                    }
        /* gA (dim, nstate), gD, gbias: sums over the batch, in double */
        real *gA = (real *)a->gA, *gD = (real *)a->gD, *gbias = (real *)a->gbias;
        for (int64_t c = 0; c < d; c++) {
            for (int64_t n = 0; n < ns; n++) {
                double acc = 0;
                for (int64_t b = 0; b < batch; b++) acc += w.pA[(b * ns + n) * d + c];
                gA[c * ns + n] = (real)acc;
            }
            double accD = 0, accb = 0;
            for (int64_t b = 0; b < batch; b++) {
                accD += w.pD[b * d + c];
                accb += w.pb[b * d + c];
            }
            if (gD) gD[c] = (real)accD;
            if (gbias) gbias[c] = (real)accb;
        }
    }
    free(w.pA);
    return err;
}

/* ---------------------------------------------------------------- causal conv + SiLU */
/* Mamba's depthwise causal conv1d followed by SiLU, channels-last, in one pass over memory:
 *   p[t, c] = bias[c] + sum_k w[k, c] * x[t - s (K-1-k), c]   (s = +1, or -1 when reverse)
 *   y[t, c] = silu(p[t, c])
 * with x = 0 outside [0, L). x rows may be strided (a slice of Mamba's in-projection); y, gy,
 * gx are contiguous (batch, L, dim); w is (K, dim). The backward recomputes p, keeps the K
 * rows of the pre-activation gradient gp it needs in a ring, and accumulates the weight and
 * bias gradients in double per thread (gw (nth, K, dim), gb (nth, dim); the caller sums). */
typedef struct {
    int64_t batch, len, dim, width, reverse, nthreads;
    const real *x;
    int64_t x_sb, x_st;
    const real *w, *bias;
    real *y;
    const real *gy;
    real *gx;
    double *gw, *gb;
} conv_args;

#define CONV_KMAX 16

/* p for row t of one batch and the channel vector at c0 */
AI vec conv_pre(const conv_args *a, const real *xb, int64_t t, int64_t c0, int nv) {
    const int64_t K = a->width, L = a->len;
    vec p = a->bias ? ldp(a->bias + c0, nv) : vsplat(0);
    for (int64_t k = 0; k < K; k++) {
        const int64_t src = a->reverse ? t + (K - 1 - k) : t - (K - 1 - k);
        if (src >= 0 && src < L) p += ldp(a->w + k * a->dim + c0, nv) * ldp(xb + src * a->x_st + c0, nv);
    }
    return p;
}

/* rows [t0, t1) of every batch are split evenly between threads */
AI void conv_share(const conv_args *a, const job_t *j, int64_t *i0, int64_t *i1) {
    const int64_t items = a->batch * a->len;
    *i0 = items * j->tid / j->nth;
    *i1 = items * (j->tid + 1) / j->nth;
}

static void *conv_fwd_thread(void *arg) {
    job_t *j = (job_t *)arg;
    const conv_args *a = j->a;
    FP_ENTER
    int64_t i0, i1;
    conv_share(a, j, &i0, &i1);
    const int64_t E = a->dim, L = a->len;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t b = i / L, t = i % L;
        const real *xb = a->x + b * a->x_sb;
        real *yr = a->y + i * E;
        for (int64_t c0 = 0; c0 < E; c0 += W) {
            const int nv = (int)(E - c0 < W ? E - c0 : W);
            const vec p = conv_pre(a, xb, t, c0, nv);
            stp(yr + c0, p * vsigmoid(p), nv);
        }
    }
    FP_LEAVE
    return NULL;
}

/* dst[0:nv] += v, in double */
AI void acc_double(double *dst, vec v, int nv) {
    if (nv == W) {
        vd acc;
        memcpy(&acc, dst, sizeof acc);
        acc += __builtin_convertvector(v, vd);
        memcpy(dst, &acc, sizeof acc);
    } else {
        for (int i = 0; i < nv; i++) dst[i] += (double)v[i];
    }
}

/* gp = gy * silu'(p) for row t, all channels, into dst; accumulates gb and gw (rows it owns) */
static void conv_grad_row(const conv_args *a, const real *xb, int64_t b, int64_t t, real *dst,
                          int own, double *gw, double *gb) {
    const int64_t E = a->dim, K = a->width, L = a->len;
    const real *gyr = a->gy + (b * L + t) * E;
    for (int64_t c0 = 0; c0 < E; c0 += W) {
        const int nv = (int)(E - c0 < W ? E - c0 : W);
        const vec p = conv_pre(a, xb, t, c0, nv);
        const vec sg = vsigmoid(p);
        const vec gp = ldp(gyr + c0, nv) * sg * (1 + p * (1 - sg));
        stp(dst + c0, gp, nv);
        if (!own) continue;
        acc_double(gb + c0, gp, nv);
        for (int64_t k = 0; k < K; k++) {
            const int64_t src = a->reverse ? t + (K - 1 - k) : t - (K - 1 - k);
            if (src < 0 || src >= L) continue;
            acc_double(gw + k * E + c0, gp * ldp(xb + src * a->x_st + c0, nv), nv);
        }
    }
}

static void *conv_bwd_thread(void *arg) {
    job_t *j = (job_t *)arg;
    const conv_args *a = j->a;
    FP_ENTER
    const int64_t E = a->dim, K = a->width, L = a->len;
    double *gw = a->gw + (int64_t)j->tid * K * E, *gb = a->gb + (int64_t)j->tid * E;
    memset(gw, 0, (size_t)(K * E) * sizeof(double));
    memset(gb, 0, (size_t)E * sizeof(double));
    real *ring = (real *)alloc_aligned((size_t)(K * E) * sizeof(real)); /* gp rows, by t mod K */
    int64_t i0, i1;
    conv_share(a, j, &i0, &i1);
    if (!ring) {
        j->err = 1;
    } else {
        /* gx[t] = sum_k w[k] * gp[t + s (K-1-k)]: walk t upwards; the ring holds the gp rows
         * of [t - (K-1), t] (reverse) or [t, t + K-1] (forward), each computed once. */
        int64_t b_cur = -1, hi = -1; /* gp rows of batch b_cur are in the ring up to row hi */
        for (int64_t i = i0; i < i1; i++) {
            const int64_t b = i / L, t = i % L;
            const real *xb = a->x + b * a->x_sb;
            const int64_t need_lo = a->reverse ? t - (K - 1) : t;
            const int64_t need_hi = a->reverse ? t : t + (K - 1);
            if (b != b_cur) { b_cur = b; hi = need_lo - 1; }
            for (int64_t r = hi + 1; r <= need_hi; r++) {
                if (r < 0 || r >= L) continue;
                /* a row is owned by the thread whose share contains it: its gw/gb terms count once */
                const int64_t row = b * L + r;
                conv_grad_row(a, xb, b, r, ring + (r % K) * E, row >= i0 && row < i1, gw, gb);
            }
            if (need_hi > hi) hi = need_hi;
            real *gxr = a->gx + i * E;
            for (int64_t c0 = 0; c0 < E; c0 += W) {
                const int nv = (int)(E - c0 < W ? E - c0 : W);
                vec acc = vsplat(0);
                for (int64_t k = 0; k < K; k++) {
                    const int64_t r = a->reverse ? t - (K - 1 - k) : t + (K - 1 - k);
                    if (r >= 0 && r < L) acc += ldp(a->w + k * E + c0, nv) * ldp(ring + (r % K) * E + c0, nv);
                }
                stp(gxr + c0, acc, nv);
            }
        }
        free(ring);
    }
    FP_LEAVE
    return NULL;
}

int SFX(conv_silu_fwd)(const conv_args *a) {
    if (a->width < 1 || a->width > CONV_KMAX) return 2;
    if (a->len == 0 || a->dim == 0 || a->batch == 0) return 0;
    return run_threads(conv_fwd_thread, a, a->nthreads);
}

int SFX(conv_silu_bwd)(const conv_args *a) {
    if (a->width < 1 || a->width > CONV_KMAX) return 2;
    if (a->len == 0 || a->dim == 0 || a->batch == 0) {
        memset(a->gw, 0, (size_t)(a->nthreads * a->width * a->dim) * sizeof(double));
        memset(a->gb, 0, (size_t)(a->nthreads * a->dim) * sizeof(double));
        return 0;
    }
    return run_threads(conv_bwd_thread, a, a->nthreads);
}

/* ---------------------------------------------------------------- helpers for tests/benchmarks */
#if !SCAN_DOUBLE
/* Ask for transparent huge pages on a large buffer that has not been touched yet: faulting in
 * a fresh 200 MB output with 4 KiB pages costs about as much as a third of the forward scan. */
int scan_advise_hugepages(void *p, int64_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t e = ((uintptr_t)p + (uintptr_t)nbytes) & ~(huge - 1);
    if (e > a) return madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p; (void)nbytes;
#endif
    return -1;
}
#endif

int SFX(scan_simd_lanes)(void) { return W; }

/* y = exp(x) with the kernel's vectorised exp. */
void SFX(scan_exp_array)(const real *x, real *y, int64_t n) {
    int64_t i = 0;
    for (; i + W <= n; i += W) stp(y + i, vexp(ldp(x + i, W)), W);
    if (i < n) stp(y + i, vexp(ldp(x + i, (int)(n - i))), (int)(n - i));
}

void SFX(scan_softplus_array)(const real *x, real *y, int64_t n) {
    int64_t i = 0;
    for (; i + W <= n; i += W) stp(y + i, vsoftplus(ldp(x + i, W)), W);
    if (i < n) stp(y + i, vsoftplus(ldp(x + i, (int)(n - i))), (int)(n - i));
}

/* Throughput probe: each thread evaluates exp(x) `reps` times over an L1-resident buffer of
 * 2048 values in [-10, 0] (what the scan does: one multiply and one exp per element).
 * Returns the number of exps evaluated; the caller times it. */
typedef struct { int64_t reps; double sink; } expjob_t;
static void *exp_bench_thread(void *arg) {
    expjob_t *e = (expjob_t *)arg;
    enum { N = 2048 };
    real *xs = (real *)alloc_aligned(2 * N * sizeof(real));
    if (!xs) { e->reps = 0; return NULL; }
    real *ys = xs + N;
    for (int i = 0; i < N; i++) xs[i] = (real)(-10.0 * i / N);
    for (int64_t r = 0; r < e->reps; r++) {
        for (int i = 0; i < N; i += W) {
            vec x;
            memcpy(&x, xs + i, sizeof x);
            const vec y = vexp(x);
            memcpy(ys + i, &y, sizeof y);
        }
        __asm__ volatile("" ::: "memory");
    }
    double s = 0;
    for (int i = 0; i < N; i++) s += ys[i];
    e->sink = s;
    free(xs);
    return NULL;
}

int64_t SFX(scan_exp_bench)(int64_t nthreads, int64_t reps) {
    int nth = nthreads < 1 ? 1 : (nthreads > 256 ? 256 : (int)nthreads);
    expjob_t jobs[256];
    pthread_t th[256];
    int started[256];
    for (int i = 0; i < nth; i++) { jobs[i].reps = reps; jobs[i].sink = 0; started[i] = 0; }
    for (int i = 1; i < nth; i++)
        started[i] = pthread_create(&th[i], NULL, exp_bench_thread, &jobs[i]) == 0;
    exp_bench_thread(&jobs[0]);
    for (int i = 1; i < nth; i++)
        if (started[i]) pthread_join(th[i], NULL);
    int64_t done = 0;
    for (int i = 0; i < nth; i++)
        if (i == 0 || started[i]) done += jobs[i].reps * 2048;
    return done;
}

#else /* SCAN_SECTION: inner kernels for NSA states (16, 8, or runtime n <= SCAN_NSMAX) */

/* One channel vector v of batch b over time steps [t0, t1); state in/out via hst. */
AI void KS(fwd_tile_impl)(const scan_args *a, int64_t b, int64_t v, int64_t t0, int64_t t1,
                          vec *hst, const int nv) {
    const int ns = (NSA == SCAN_NSMAX) ? (int)a->nstate : NSA;
    const int64_t d = a->dim, ch = v * W, K = a->ck_every;
    const real *u = (const real *)a->u + b * a->u_sb + ch;
    const real *dl = (const real *)a->delta + b * a->dl_sb + ch;
    const real *z = a->z ? (const real *)a->z + b * a->z_sb + ch : NULL;
    const real *Bp = (const real *)a->B + b * a->B_sb;
    const real *Cp = (const real *)a->C + b * a->C_sb;
    real *y = (real *)a->y + b * a->y_sb + ch;
    const real *Ap = (const real *)a->A + ch;
    const int64_t u_st = a->u_st, dl_st = a->dl_st, z_st = a->z_st, B_st = a->B_st,
                  C_st = a->C_st, y_st = a->y_st;
    const vec Dv = a->D ? ldp((const real *)a->D + ch, nv) : vsplat(0);
    const vec bv = a->bias ? ldp((const real *)a->bias + ch, nv) : vsplat(0);
    const int softplus = (int)a->softplus;
    real *ck = (real *)a->ck;
    const int64_t nck = (a->len + K - 1) / K;
    vec A2[NSA], h[NSA];
    for (int k = 0; k < ns; k++) {
        A2[k] = ldp(Ap + k * d, nv) * LOG2E;
        h[k] = hst[k];
    }
    int64_t next_ck = ck ? ((t0 + K - 1) / K) * K : INT64_MAX;
    /* Steps go in blocks of SCAN_TB: first the per-step quantities that do not depend on the
     * state (softplus, dt * u, the gate), with no dependency between steps, then the state
     * recurrence. In one loop the softplus -> exp -> state -> output chain of each step was
     * too long for the out-of-order window to overlap consecutive steps. */
    vec dtb[SCAN_TB], dtub[SCAN_TB], yb[SCAN_TB], gb[SCAN_TB];
    for (int64_t tb = t0; tb < t1; tb += SCAN_TB) {
        const int nb = (int)(t1 - tb < SCAN_TB ? t1 - tb : SCAN_TB);
        for (int j = 0; j < nb; j++) {
            const int64_t t = tb + j;
            vec dt = ldp(dl + t * dl_st, nv) + bv;
            if (softplus) dt = vsoftplus(dt);
            const vec uv = ldp(u + t * u_st, nv);
            dtb[j] = dt;
            dtub[j] = dt * uv;
            yb[j] = Dv * uv;
            if (z) {
                const vec zv = ldp(z + t * z_st, nv);
                gb[j] = zv * vsigmoid(zv);
            }
        }
        for (int j = 0; j < nb; j++) {
            const int64_t t = tb + j;
            if (t == next_ck) {
                real *dst = ck + ((b * nck + t / K) * ns) * d + ch;
                for (int k = 0; k < ns; k++) stp(dst + k * d, h[k], nv);
                next_ck += K;
            }
            const vec dt = dtb[j], dtu = dtub[j];
            const real *Bt = Bp + t * B_st, *Ct = Cp + t * C_st;
            vec acc0 = yb[j], acc1 = vsplat(0);
#pragma GCC unroll 16
            for (int k = 0; k < ns; k++) {
                const vec dA = vexp2(dt * A2[k]);
                h[k] = dA * h[k] + dtu * Bt[k];
                if (k & 1) acc1 += Ct[k] * h[k];
                else acc0 += Ct[k] * h[k];
            }
            acc0 += acc1;
            if (z) acc0 *= gb[j];
            stp(y + t * y_st, acc0, nv);
        }
    }
    for (int k = 0; k < ns; k++) hst[k] = h[k];
}

static void KS(fwd_tile_full)(const scan_args *a, int64_t b, int64_t v, int64_t t0, int64_t t1,
                              vec *hst) {
    KS(fwd_tile_impl)(a, b, v, t0, t1, hst, W);
}
static void KS(fwd_tile_part)(const scan_args *a, int64_t b, int64_t v, int64_t t0, int64_t t1,
                              vec *hst, int nv) {
    KS(fwd_tile_impl)(a, b, v, t0, t1, hst, nv);
}

/* Backward over chunk c (steps [c*K, c*K+len)) for channel vector v of batch b:
 * recompute the chunk from its checkpoint (storing exp(dt A), exp(dt A) h_{t-1}, dt, the
 * gradient at the pre-gate output, and accumulating gC), then run it in reverse. */
AI void KS(bwd_chunk_impl)(const scan_args *a, int64_t b, int64_t v, int64_t c, int64_t len,
                           bwd_scratch *s, vec *gcarry, vd *gAacc, vd *gDacc, vd *gbacc,
                           const int nv) {
    const int ns = (NSA == SCAN_NSMAX) ? (int)a->nstate : NSA;
    const int64_t d = a->dim, ch = v * W, K = a->ck_every, t0 = c * K;
    const int64_t nck = (a->len + K - 1) / K;
    const real *u = (const real *)a->u + b * a->u_sb + ch;
    const real *dl = (const real *)a->delta + b * a->dl_sb + ch;
    const real *z = a->z ? (const real *)a->z + b * a->z_sb + ch : NULL;
    const real *Bp = (const real *)a->B + b * a->B_sb;
    const real *Cp = (const real *)a->C + b * a->C_sb;
    const real *gy = (const real *)a->gy + b * a->gy_sb + ch;
    real *gu = (real *)a->gu + b * a->gu_sb + ch;
    real *gd = (real *)a->gdelta + b * a->gd_sb + ch;
    real *gz = a->z ? (real *)a->gz + b * a->gz_sb + ch : NULL;
    const real *Ap = (const real *)a->A + ch;
    const int64_t u_st = a->u_st, dl_st = a->dl_st, z_st = a->z_st, B_st = a->B_st,
                  C_st = a->C_st, gy_st = a->gy_st, gu_st = a->gu_st, gd_st = a->gd_st,
                  gz_st = a->gz_st;
    const vec Dv = a->D ? ldp((const real *)a->D + ch, nv) : vsplat(0);
    const vec bv = a->bias ? ldp((const real *)a->bias + ch, nv) : vsplat(0);
    const int softplus = (int)a->softplus;
    const real *ckp = (const real *)a->ck + ((b * nck + c) * ns) * d + ch;
    vec *restrict rec = s->rec, *restrict dtb = s->dt, *restrict gyb = s->gy0;
    vec *restrict sgd = s->sgd, *restrict sgz = s->sgz;
    vec *restrict gAm = s->gAl;

    vec A2[NSA], h[NSA];
    for (int k = 0; k < ns; k++) {
        A2[k] = ldp(Ap + k * d, nv) * LOG2E;
        h[k] = ldp(ckp + k * d, nv);
    }
    /* Chunks are short (K steps), too short for the hardware prefetcher to follow the
     * channel-vector's column down the rows: fetch the previous chunk's rows (processed
     * next) while working on this one. */
    const int pf = c > 0;
    /* per-step quantities that do not depend on the state, steps independent of each other
     * (kept out of the recurrence loops so consecutive steps there can overlap) */
    for (int64_t kk = 0; kk < len; kk++) {
        const int64_t t = t0 + kk;
        if (pf) {
            __builtin_prefetch(u + (t - K) * u_st);
            __builtin_prefetch(dl + (t - K) * dl_st);
            __builtin_prefetch(gy + (t - K) * gy_st);
            if (z) __builtin_prefetch(z + (t - K) * z_st);
        }
        const vec dl0 = ldp(dl + t * dl_st, nv) + bv;
        if (softplus) {
            dtb[kk] = vsoftplus(dl0);
            sgd[kk] = vsigmoid(dl0); /* d softplus / d delta */
        } else {
            dtb[kk] = dl0;
        }
        if (z) sgz[kk] = vsigmoid(ldp(z + t * z_st, nv));
    }
    /* recompute, forward in time */
    for (int64_t kk = 0; kk < len; kk++) {
        const int64_t t = t0 + kk;
        const vec dt = dtb[kk];
        const vec uv = ldp(u + t * u_st, nv);
        const vec dtu = dt * uv;
        vec y0 = Dv * uv;
        const real *Bt = Bp + t * B_st, *Ct = Cp + t * C_st;
        vec *q = rec + 4 * kk * ns, *e = q + ns, *ac = q + 3 * ns;
#pragma GCC unroll 16
        for (int k = 0; k < ns; k++) {
            const vec dA = vexp2(dt * A2[k]);
            const vec qq = dA * h[k];
            e[k] = dA;
            q[k] = qq;
            h[k] = qq + dtu * Bt[k];
            y0 += Ct[k] * h[k];
        }
        const vec gyv = ldp(gy + t * gy_st, nv);
        vec gy0 = gyv;
        if (z) {
            const vec zv = ldp(z + t * z_st, nv);
            const vec sg = sgz[kk];
            gy0 = gyv * (zv * sg);
            stp(gz + t * gz_st, gyv * y0 * sg * (1 + zv * (1 - sg)), nv);
        }
        gyb[kk] = gy0;
#pragma GCC unroll 16
        for (int k = 0; k < ns; k++) ac[k] += gy0 * h[k];
    }
    /* reverse in time; the gradient of A accumulates in memory (gAm) to spare registers */
    vec g[NSA];
    for (int k = 0; k < ns; k++) {
        g[k] = gcarry[k];
        gAm[k] = vsplat(0);
        A2[k] = ldp(Ap + k * d, nv); /* reuse: raw A */
    }
    vec gDl = vsplat(0), gbl = vsplat(0);
    for (int64_t kk = len - 1; kk >= 0; kk--) {
        const int64_t t = t0 + kk;
        const vec dt = dtb[kk], gy0 = gyb[kk];
        if (pf) {
            __builtin_prefetch(gu + (t - K) * gu_st, 1);
            __builtin_prefetch(gd + (t - K) * gd_st, 1);
            if (z) __builtin_prefetch(gz + (t - K) * gz_st, 1);
        }
        const vec uv = ldp(u + t * u_st, nv);
        const vec dtu = dt * uv;
        const real *Bt = Bp + t * B_st, *Ct = Cp + t * C_st;
        const vec *q = rec + 4 * kk * ns, *e = q + ns;
        vec *ab = rec + (4 * kk + 2) * ns;
        vec s1 = vsplat(0), s2 = vsplat(0);
#pragma GCC unroll 16
        for (int k = 0; k < ns; k++) {
            g[k] += gy0 * Ct[k];
            ab[k] += g[k] * dtu;
            s1 += g[k] * Bt[k];
            const vec w = g[k] * q[k];
            s2 += w * A2[k];
            gAm[k] += w * dt;
            g[k] *= e[k];
        }
        vec gdl = s1 * uv + s2;
        if (softplus) gdl *= sgd[kk];
        gbl += gdl;
        gDl += gy0 * uv;
        stp(gu + t * gu_st, gy0 * Dv + s1 * dt, nv);
        stp(gd + t * gd_st, gdl, nv);
    }
    for (int k = 0; k < ns; k++) {
        gcarry[k] = g[k];
        gAacc[k] += __builtin_convertvector(gAm[k], vd);
    }
    *gDacc += __builtin_convertvector(gDl, vd);
    *gbacc += __builtin_convertvector(gbl, vd);
}

static void KS(bwd_chunk_full)(const scan_args *a, int64_t b, int64_t v, int64_t c, int64_t len,
                               bwd_scratch *s, vec *gc, vd *gA, vd *gD, vd *gb) {
    KS(bwd_chunk_impl)(a, b, v, c, len, s, gc, gA, gD, gb, W);
}
static void KS(bwd_chunk_part)(const scan_args *a, int64_t b, int64_t v, int64_t c, int64_t len,
                               bwd_scratch *s, vec *gc, vd *gA, vd *gD, vd *gb, int nv) {
    KS(bwd_chunk_impl)(a, b, v, c, len, s, gc, gA, gD, gb, nv);
}

#endif /* SCAN_SECTION */
