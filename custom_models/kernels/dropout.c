/* Dropout on float32: out[i] = keep(i) ? x[i] * scale : 0.
 *
 * PyTorch's CPU dropout draws its mask with bernoulli_, which on non-Intel CPUs runs
 * one Mersenne-Twister draw after another on one thread (~9 ns a number here, the
 * largest single cost of a NARM step on MovieLens-100k). Here the mask is a
 * counter-based hash: number i is kept when a 32-bit half of splitmix64(seed + pair
 * counter) is below `threshold` = keep probability * 2^32. So
 *
 *   - the mask is a pure function of (seed, i): backward recomputes it rather than
 *     storing it, and the result does not depend on the number of threads;
 *   - the loop has no state between iterations and vectorises.
 *
 * Each 64-bit hash serves two neighbouring numbers (its low and high halves).
 * splitmix64 (Steele, Lea, Flood, OOPSLA 2014) passes BigCrush; its finaliser over a
 * counter is the generator itself.
 *
 * Built by custom_models/native.py (see narm_attention.c for the flags).
 */
#include <stdint.h>

static inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

/* x, out: n floats (out may be x); threshold in [0, 2^32]. */
void dropout_apply(const float *x, int64_t n, uint64_t seed, uint64_t threshold, float scale, int threads,
                   float *out) {
    int64_t pairs = n / 2;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
    for (int64_t p = 0; p < pairs; p++) {
        uint64_t h = splitmix64(seed + (uint64_t)(p + 1) * GOLDEN);
        out[2 * p] = (h & 0xffffffffULL) < threshold ? x[2 * p] * scale : 0.0f;
        out[2 * p + 1] = (h >> 32) < threshold ? x[2 * p + 1] * scale : 0.0f;
    }
    if (n % 2) {
        uint64_t h = splitmix64(seed + (uint64_t)(pairs + 1) * GOLDEN);
        out[n - 1] = (h & 0xffffffffULL) < threshold ? x[n - 1] * scale : 0.0f;
    }
}
