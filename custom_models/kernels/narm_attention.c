/* The attention weights of NARM's causal local attention, and their gradients.
 *
 *   alpha[r, t, j] = v . sigmoid(q[r, t] + k[r, j])   for j <= t < lengths[r]
 *
 * PyTorch builds the [rows, T, J, H] sigmoid tensor for this and passes over it about
 * ten times (forward and backward); here each (t, j) pair computes its H sigmoids in
 * registers and uses them at once, so the cost is the sigmoids' arithmetic, not memory
 * traffic. The products with the hidden states (local = alpha @ hidden, and their
 * gradients) stay in PyTorch's batched matrix products.
 *
 * All tensors are float32 and contiguous: q, k [rows, L, H]; v [H]; alpha and
 * grad_alpha [rows, L, L]. Entries with j > t or t >= lengths[r] are never read, and
 * alpha's are left as the caller made them (zeros).
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

/* Queries (r, t) are independent: they are spread over the threads. */
void narm_attention_forward(const float *q, const float *k, const float *v, const int64_t *lengths,
                            int64_t rows, int64_t L, int64_t H, int threads, float *alpha) {
#pragma omp parallel for schedule(dynamic, 8) collapse(2) num_threads(threads)
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t t = 0; t < L; t++) {
            if (t >= lengths[r]) continue;
            const float *qt = q + (r * L + t) * H;
            float *out = alpha + (r * L + t) * L;
            for (int64_t j = 0; j <= t; j++) {
                const float *kj = k + (r * L + j) * H;
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t h = 0; h < H; h++) sum += v[h] * sigmoid(qt[h] + kj[h]);
                out[j] = sum;
            }
        }
    }
}

/* Given d loss / d alpha, the gradients of q, k and v (grad_q, grad_k zeroed by the caller):
 * d loss / d (q_t + k_j) = grad_alpha_tj v * s (1 - s) with s = sigmoid(q_t + k_j).
 * A row's keys collect from all of its queries, so a row is one thread's work; grad_v is
 * summed per row into grad_v_rows [rows, H] (zeroed by the caller), which the caller adds
 * up in a fixed order, so the result does not depend on the number of threads. */
void narm_attention_backward(const float *q, const float *k, const float *v, const int64_t *lengths,
                             int64_t rows, int64_t L, int64_t H, int threads, const float *grad_alpha,
                             float *grad_q, float *grad_k, float *grad_v_rows) {
#pragma omp parallel num_threads(threads)
    {
        float *gq = malloc(sizeof(float) * H);
        float *gv = malloc(sizeof(float) * H);
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < rows; r++) {
            memset(gv, 0, sizeof(float) * H);
            for (int64_t t = 0; t < lengths[r]; t++) {
                const float *qt = q + (r * L + t) * H;
                const float *ga = grad_alpha + (r * L + t) * L;
                memset(gq, 0, sizeof(float) * H);
                for (int64_t j = 0; j <= t; j++) {
                    const float *kj = k + (r * L + j) * H;
                    float *gk = grad_k + (r * L + j) * H;
                    const float g = ga[j];
#pragma omp simd
                    for (int64_t h = 0; h < H; h++) {
                        const float s = sigmoid(qt[h] + kj[h]);
                        const float d = g * v[h] * s * (1.0f - s);
                        gv[h] += g * s;
                        gq[h] += d;
                        gk[h] += d;
                    }
                }
                memcpy(grad_q + (r * L + t) * H, gq, sizeof(float) * H);
            }
            memcpy(grad_v_rows + r * H, gv, sizeof(float) * H);
        }
        free(gq);
        free(gv);
    }
}
