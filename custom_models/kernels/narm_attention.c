/* NARM's causal local attention on packed sequences, and its gradients.
 *
 *   local[b, t] = sum_{j <= t} alpha_tj h[b, j],   alpha_tj = v . sigmoid(q[b, t] + k[b, j])
 *
 * PyTorch builds the [rows, T, J, H] sigmoid tensor for this and passes over it about
 * ten times (forward and backward); here each (t, j) pair computes its H sigmoids in
 * registers and uses them at once, so the cost is the sigmoids' arithmetic, not memory
 * traffic. The weighted sums over the hidden states are done here too, on the packed
 * cells, so no padded [rows, T, H] or [rows, T, J] tensor is made.
 *
 * The layout is PackedSequence's: time-major, rows longest first; step t holds
 * batch_sizes[t] rows, so cell (t, b) is row starts[t] + b of q, k, h [cells, H] with
 * starts[t] = batch_sizes[0] + ... + batch_sizes[t - 1], and row b runs for the steps
 * with batch_sizes[t] > b. All tensors are float32 and contiguous.
 *
 * Built by custom_models/native.py: compiled with -ffast-math, so that GCC calls glibc's
 * vectorised expf (libmvec), and linked without it, so that loading the library leaves
 * the process's floating-point flags alone. OpenMP resolves to the runtime PyTorch has
 * already loaded.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* starts[t] for t < steps, then each row's length for b < rows (one array; the caller
 * frees it). batch_sizes is non-increasing, so row b runs while batch_sizes[t] > b. */
static int64_t *packed_layout(const int64_t *batch_sizes, int64_t steps, int64_t rows) {
    int64_t *layout = malloc(sizeof(int64_t) * (steps + rows > 0 ? steps + rows : 1));
    int64_t cells = 0, t = steps;
    for (int64_t s = 0; s < steps; s++) {
        layout[s] = cells;
        cells += batch_sizes[s];
    }
    for (int64_t b = 0; b < rows; b++) {
        while (t > 0 && batch_sizes[t - 1] <= b) t--;
        layout[steps + b] = t;
    }
    return layout;
}

/* local [cells, H] zeroed by the caller. Queries (b, t) are independent: they are
 * spread over the threads. */
void narm_attention_forward(const float *q, const float *k, const float *hidden, const float *v,
                            const int64_t *batch_sizes, int64_t steps, int64_t rows, int64_t H, int threads,
                            float *local) {
    int64_t *starts = packed_layout(batch_sizes, steps, rows);
    const int64_t *lengths = starts + steps;
#pragma omp parallel for schedule(dynamic, 8) collapse(2) num_threads(threads)
    for (int64_t b = 0; b < rows; b++) {
        for (int64_t t = 0; t < steps; t++) {
            if (t >= lengths[b]) continue;
            const float *qt = q + (starts[t] + b) * H;
            float *out = local + (starts[t] + b) * H;
            for (int64_t j = 0; j <= t; j++) {
                const float *kj = k + (starts[j] + b) * H, *hj = hidden + (starts[j] + b) * H;
                float alpha = 0.0f;
#pragma omp simd reduction(+ : alpha)
                for (int64_t h = 0; h < H; h++) alpha += v[h] * sigmoid(qt[h] + kj[h]);
#pragma omp simd
                for (int64_t h = 0; h < H; h++) out[h] += alpha * hj[h];
            }
        }
    }
    free(starts);
}

/* Given d loss / d local, the gradients of q, k, h and v (grad_k, grad_hidden and
 * grad_v_rows [rows, H] zeroed by the caller; grad_q is written):
 *   d loss / d h_j     += alpha_tj grad_t
 *   d loss / d alpha_tj = grad_t . h_j =: g
 *   d loss / d (q_t + k_j) = g v s (1 - s),  s = sigmoid(q_t + k_j).
 * A row's keys collect from all of its queries, so a row is one thread's work (rows
 * never share a cell); grad_v is summed per row, and the caller adds the rows up in a
 * fixed order, so the result does not depend on the number of threads. */
void narm_attention_backward(const float *q, const float *k, const float *hidden, const float *v,
                             const int64_t *batch_sizes, int64_t steps, int64_t rows, int64_t H, int threads,
                             const float *grad_local, float *grad_q, float *grad_k, float *grad_hidden,
                             float *grad_v_rows) {
    int64_t *starts = packed_layout(batch_sizes, steps, rows);
    const int64_t *lengths = starts + steps;
#pragma omp parallel num_threads(threads)
    {
        float *s = malloc(sizeof(float) * H);
        float *gq = malloc(sizeof(float) * H);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < rows; b++) {
            float *gv = grad_v_rows + b * H;
            for (int64_t t = 0; t < lengths[b]; t++) {
                const float *qt = q + (starts[t] + b) * H, *gt = grad_local + (starts[t] + b) * H;
                memset(gq, 0, sizeof(float) * H);
                for (int64_t j = 0; j <= t; j++) {
                    const int64_t cj = (starts[j] + b) * H;
                    const float *kj = k + cj, *hj = hidden + cj;
                    float alpha = 0.0f, g = 0.0f;
#pragma omp simd reduction(+ : alpha, g)
                    for (int64_t h = 0; h < H; h++) {
                        s[h] = sigmoid(qt[h] + kj[h]);
                        alpha += v[h] * s[h];
                        g += gt[h] * hj[h];
                    }
                    float *gk = grad_k + cj, *gh = grad_hidden + cj;
#pragma omp simd
                    for (int64_t h = 0; h < H; h++) {
                        const float d = g * v[h] * s[h] * (1.0f - s[h]);
                        gh[h] += alpha * gt[h];
                        gv[h] += g * s[h];
                        gq[h] += d;
                        gk[h] += d;
                    }
                }
                memcpy(grad_q + (starts[t] + b) * H, gq, sizeof(float) * H);
            }
        }
        free(s);
        free(gq);
    }
    free(starts);
}
