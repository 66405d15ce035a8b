/* The time loop of a one-layer GRU over packed sequences, forward and backward.
 *
 * PyTorch's gate order and equations (nn.GRU):
 *   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n),
 *   h = n + z * (h_prev - n),      with gi = x W_ih^T + b_ih (computed by the caller) and
 *   gh = h_prev W_hh^T + b_hh (b_hh NULL: a bias-free GRU). Backward's d_gh is d loss / d gh,
 *   so the caller's bias gradients are column sums of d_gi and d_gh.
 *
 * Packed layout: step t holds sizes[t] rows (non-increasing), at cells starts[t] ...; row b
 * of step t continues row b of step t - 1, and the state before step 0 is zero. In PyTorch
 * a step is a dozen small ops on a few dozen rows; here it is one pass per row, the
 * recurrent product in registers, two rows at a time, with the rows of a step spread
 * over the threads.
 *
 * Float32, contiguous. H is the hidden size; W is zero-padded to a multiple of BLOCK
 * columns (the caller pads): forward takes W_hh^T as [H, wide3] (wide3 >= 3H), backward
 * W_hh as [3H, wideH] (wideH >= H). Built by custom_models/native.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 32 /* output columns kept in registers at once */

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* out0[c] = sum_k x0[k] w[k, c] and out1[c] = sum_k x1[k] w[k, c], for c < width (a multiple
 * of BLOCK); w is [depth, width]. Two rows at once: each load of w feeds two products. */
static void two_rows_times(const float *restrict x0, const float *restrict x1, const float *restrict w,
                           int64_t depth, int64_t width, float *restrict out0, float *restrict out1) {
    for (int64_t c0 = 0; c0 < width; c0 += BLOCK) {
        float acc0[BLOCK] = {0}, acc1[BLOCK] = {0};
        for (int64_t k = 0; k < depth; k++) {
            const float a = x0[k], b = x1[k];
            const float *restrict wk = w + k * width + c0;
#pragma omp simd
            for (int c = 0; c < BLOCK; c++) {
                acc0[c] += a * wk[c];
                acc1[c] += b * wk[c];
            }
        }
        memcpy(out0 + c0, acc0, sizeof acc0);
        memcpy(out1 + c0, acc1, sizeof acc1);
    }
}

/* One cell's state h, and its gates r, z, n and gh_n into keep [4H]. */
static void forward_cell(const float *g, const float *gh, const float *h_prev, int64_t H, float *h, float *keep) {
#pragma omp simd
    for (int64_t i = 0; i < H; i++) {
        const float r = sigmoid(g[i] + gh[i]);
        const float z = sigmoid(g[H + i] + gh[H + i]);
        const float n = tanhf(g[2 * H + i] + r * gh[2 * H + i]);
        h[i] = n + z * (h_prev[i] - n);
        keep[i] = r;
        keep[H + i] = z;
        keep[2 * H + i] = n;
        keep[3 * H + i] = gh[2 * H + i];
    }
}

/* out [cells, H]: the states; gates [cells, 4H]: r, z, n and gh_n of every cell, for backward
 * (NULL: not kept; each thread then writes them to a scratch row). */
void packed_gru_forward(const float *gi, const float *w_hh_t, const float *b_hh, const int64_t *sizes,
                        int64_t steps, int64_t H, int64_t wide3, int threads, float *out, float *gates) {
#pragma omp parallel num_threads(threads)
    {
        float *gh = calloc(2 * wide3, sizeof(float)), *zero = calloc(H, sizeof(float));
        float *scratch = gates ? NULL : malloc(sizeof(float) * 4 * H);
        int64_t start = 0, previous = 0;
        for (int64_t t = 0; t < steps; t++) {
            const int64_t rows = sizes[t];
#pragma omp for schedule(static)
            for (int64_t pair = 0; pair < (rows + 1) / 2; pair++) {
                const int64_t b = 2 * pair, n = b + 1 < rows ? 2 : 1;
                const float *h0 = t ? out + (previous + b) * H : zero;
                const float *h1 = t && n == 2 ? out + (previous + b + 1) * H : h0;
                if (t) two_rows_times(h0, h1, w_hh_t, H, wide3, gh, gh + wide3);
                if (b_hh) /* gh = h_prev W_hh^T + b_hh; at t = 0, h_prev = 0: gh = b_hh */
                    for (int64_t i = 0; i < n; i++)
                        for (int64_t c = 0; c < 3 * H; c++) gh[i * wide3 + c] = (t ? gh[i * wide3 + c] : 0.0f) + b_hh[c];
                for (int64_t i = 0; i < n; i++) {
                    const int64_t cell = start + b + i;
                    forward_cell(gi + cell * 3 * H, gh + i * wide3, i ? h1 : h0, H, out + cell * H,
                                 gates ? gates + cell * 4 * H : scratch);
                }
            }
            previous = start;
            start += rows;
        }
        free(gh);
        free(zero);
        free(scratch);
    }
}

/* The gate gradients of one cell from its d loss / d h (g) and its kept gates. */
static void backward_cell(const float *g, const float *keep, const float *h_prev, int64_t H, float *dgi,
                          float *dgh) {
#pragma omp simd
    for (int64_t i = 0; i < H; i++) {
        const float r = keep[i], z = keep[H + i], n = keep[2 * H + i], ghn = keep[3 * H + i];
        const float hp = h_prev ? h_prev[i] : 0.0f;
        const float dn = g[i] * (1.0f - z) * (1.0f - n * n);
        const float dz = g[i] * (hp - n) * z * (1.0f - z);
        const float dr = dn * ghn * r * (1.0f - r);
        dgi[i] = dr;
        dgi[H + i] = dz;
        dgi[2 * H + i] = dn;
        dgh[i] = dr;
        dgh[H + i] = dz;
        dgh[2 * H + i] = dn * r;
    }
}

/* Given dh [cells, H] (d loss / d out; overwritten: the gradient carried back is added in),
 * writes d_gi [cells, 3H] (d loss / d gi) and d_gh [cells, 3H] (d loss / d gh); the caller
 * turns them into the weight and input gradients with three matrix products. */
void packed_gru_backward(const float *out, const float *gates, const float *w_hh, const int64_t *sizes,
                         int64_t steps, int64_t H, int64_t wideH, int threads, float *dh, float *d_gi,
                         float *d_gh) {
    int64_t *starts = malloc(sizeof(int64_t) * (steps + 1));
    starts[0] = 0;
    for (int64_t t = 0; t < steps; t++) starts[t + 1] = starts[t] + sizes[t];
#pragma omp parallel num_threads(threads)
    {
        float *back = calloc(2 * wideH, sizeof(float)), *spare = calloc(3 * H, sizeof(float));
        for (int64_t t = steps - 1; t >= 0; t--) {
            const int64_t rows = sizes[t];
#pragma omp for schedule(static)
            for (int64_t pair = 0; pair < (rows + 1) / 2; pair++) {
                const int64_t b = 2 * pair, n = b + 1 < rows ? 2 : 1;
                for (int64_t i = 0; i < n; i++) {
                    const int64_t cell = starts[t] + b + i;
                    backward_cell(dh + cell * H, gates + cell * 4 * H,
                                  t ? out + (starts[t - 1] + b + i) * H : NULL, H, d_gi + cell * 3 * H,
                                  d_gh + cell * 3 * H);
                }
                if (!t) continue;
                /* dh_prev += dh z + d_gh W_hh: rows b, b + 1 of the step before, this thread's alone */
                const int64_t cell = starts[t] + b;
                two_rows_times(d_gh + cell * 3 * H, n == 2 ? d_gh + (cell + 1) * 3 * H : spare, w_hh, 3 * H, wideH,
                               back, back + wideH);
                for (int64_t i = 0; i < n; i++) {
                    const float *g = dh + (cell + i) * H, *z = gates + (cell + i) * 4 * H + H;
                    float *dp = dh + (starts[t - 1] + b + i) * H;
#pragma omp simd
                    for (int64_t j = 0; j < H; j++) dp[j] += g[j] * z[j] + back[i * wideH + j];
                }
            }
        }
        free(back);
        free(spare);
    }
    free(starts);
}
