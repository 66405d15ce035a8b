/* GRU4Rec's BPR-max loss (Hidasi & Karatzoglou, CIKM 2018) and its gradient, for each
 * row k of a session-parallel mini-batch's score matrix R [rows, cols]:
 *
 *   loss_k = -log(sum_j s_j sigmoid(r_kk - r_kj) + 1e-24) + bpreg * sum_j s_j r_kj^2
 *
 * over the row's negatives j != k (row k's target is column k), with s the softmax of
 * the negatives' scores. PyTorch passes over the [rows, cols] matrix about fifteen
 * times forward and twenty-five times backward; here a row takes three passes forward
 * and one backward, each recomputing the softmax weights and sigmoids where it uses
 * them. Rows are independent and each is one thread's work, so the results do not
 * depend on the number of threads.
 *
 * stats [rows, 4] carries what backward needs: the negatives' largest score m, their
 * softmax denominator Z = sum_j exp(r_j - m), A = sum_j s_j sigmoid_j and
 * B = sum_j s_j r_j^2.
 *
 * Built by custom_models/native.py (see narm_attention.c for the flags).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

/* exp's argument stays within float range: -ffast-math lets GCC assume no infinities. */
static inline float clamped_exp(float x) { return expf(fminf(fmaxf(x, -87.0f), 87.0f)); }

static inline float sigmoid(float x) { return 1.0f / (1.0f + clamped_exp(-x)); }

/* The negatives of row k are columns [0, k) and [k + 1, cols): each sum runs over the
 * two ranges separately, so the loops stay branch-free and vectorise. */
static float max_of(const float *r, int64_t from, int64_t to) {
    float m = -FLT_MAX;
#pragma omp simd reduction(max : m)
    for (int64_t j = from; j < to; j++) m = fmaxf(m, r[j]);
    return m;
}

static void sums_of(const float *r, int64_t from, int64_t to, float pos, float m, float *z, float *a, float *b) {
    float z_sum = 0.0f, a_sum = 0.0f, b_sum = 0.0f;
#pragma omp simd reduction(+ : z_sum, a_sum, b_sum)
    for (int64_t j = from; j < to; j++) {
        float e = clamped_exp(r[j] - m);
        z_sum += e;
        a_sum += e * sigmoid(pos - r[j]);
        b_sum += e * r[j] * r[j];
    }
    *z += z_sum, *a += a_sum, *b += b_sum;
}

void bpr_max_forward(const float *R, int64_t rows, int64_t cols, float bpreg, int threads, float *loss,
                     float *stats) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t k = 0; k < rows; k++) {
        const float *r = R + k * cols;
        const float pos = r[k];
        const float m = fmaxf(max_of(r, 0, k), max_of(r, k + 1, cols));
        float z = 0.0f, a = 0.0f, b = 0.0f;
        sums_of(r, 0, k, pos, m, &z, &a, &b);
        sums_of(r, k + 1, cols, pos, m, &z, &a, &b);
        a /= z, b /= z;
        loss[k] = -logf(a + 1e-24f) + bpreg * b;
        float *st = stats + 4 * k;
        st[0] = m, st[1] = z, st[2] = a, st[3] = b;
    }
}

/* d loss_k / d r_kj = -s_j (sigmoid_j^2 - A) / (A + 1e-24) + bpreg s_j (r_j^2 - B + 2 r_j) for a
 * negative j, and -sum_j s_j sigmoid_j (1 - sigmoid_j) / (A + 1e-24) for the target column;
 * every row's is scaled by grad[k]. Writes the range's columns of grad_r and returns its
 * part of the target column's sum. */
static float grad_of(const float *r, int64_t from, int64_t to, float pos, const float *st, float bpreg, float g,
                     float *grad_r) {
    const float m = st[0], inv_z = 1.0f / st[1], a = st[2], b = st[3], inv_a = 1.0f / (a + 1e-24f);
    float target = 0.0f;
#pragma omp simd reduction(+ : target)
    for (int64_t j = from; j < to; j++) {
        float s = clamped_exp(r[j] - m) * inv_z, sig = sigmoid(pos - r[j]);
        grad_r[j] = g * (-s * (sig * sig - a) * inv_a + bpreg * s * (r[j] * r[j] - b + 2.0f * r[j]));
        target += s * sig * (1.0f - sig);
    }
    return target;
}

void bpr_max_backward(const float *R, const float *stats, const float *grad, int64_t rows, int64_t cols, float bpreg,
                      int threads, float *grad_R) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t k = 0; k < rows; k++) {
        const float *r = R + k * cols, *st = stats + 4 * k;
        float *grad_r = grad_R + k * cols;
        const float pos = r[k], g = grad[k];
        float target = grad_of(r, 0, k, pos, st, bpreg, g, grad_r) + grad_of(r, k + 1, cols, pos, st, bpreg, g, grad_r);
        grad_r[k] = -g * target / (st[2] + 1e-24f);
    }
}
