// hypoforge's training kernels: every launch serves all lanes of a batch (blockIdx.z or
// blockIdx.y is the lane), each lane one small MLP with its own data, parameters and activation.
// Every sum runs in a fixed order inside one thread or one block, so a batch gives the same bits
// on every run. Compiled at run time by NVRTC; the constants below are set by the host.
//
// Layouts (row-major): a lane's parameters are [W0, b0, W1, b1, ...], W being fan_out x fan_in;
// activations are lanes x batch x width; an activation table is TABLE_INTERVALS float4
// intervals (f just right of the left knot, f just left of the right knot, f' at the same two
// points), then (TABLE_INTERVALS + 1) float2 knots (f, f'), padded to TABLE_FLAT floats.

#ifndef TABLE_INTERVALS
#error "the host defines TABLE_INTERVALS, TABLE_PER_UNIT, TABLE_HALF_RANGE and TABLE_FLAT"
#endif

typedef unsigned long long u64;

// f and f' of lane's activation at z: the host's ReLU (table < 0) or table interpolation,
// exactly as batched::table::ActivationTable::lookup computes it.
__device__ __forceinline__ void activation(float z, int table, const float* tables, float* f, float* d) {
    if (table < 0) {
        *f = z > 0.0f ? z : 0.0f;
        *d = z > 0.0f ? 1.0f : 0.0f;
        return;
    }
    const float* t = tables + (size_t)table * TABLE_FLAT;
    const float2* knots = (const float2*)(t + 4 * TABLE_INTERVALS);
    if (z != z) {
        *f = z;
        *d = z;
        return;
    }
    if (z <= -TABLE_HALF_RANGE || z >= TABLE_HALF_RANGE) {
        float2 k = knots[z < 0.0f ? 0 : TABLE_INTERVALS];
        float end = z < 0.0f ? -TABLE_HALF_RANGE : TABLE_HALF_RANGE;
        *f = k.x + k.y * (z - end);
        *d = k.y;
        return;
    }
    float s = z * TABLE_PER_UNIT;
    float k = floorf(s);
    float frac = s - k;
    int i = (int)k + TABLE_INTERVALS / 2;
    if (frac == 0.0f) {
        float2 v = knots[i];
        *f = v.x;
        *d = v.y;
        return;
    }
    float4 v = ((const float4*)t)[i];
    *f = v.x + frac * (v.y - v.x);
    *d = v.z + frac * (v.w - v.z);
}

// Rows of every lane's data into its batch input, with their targets. With `use_index`, row r of
// lane l is index[l * index_stride + offset + r] of its slot; without, row offset + r.
extern "C" __global__ void gather_rows(
    float* x, unsigned* labels, float* values,
    const float* data, const unsigned* data_labels, const float* data_values,
    const unsigned* slot_of_lane, int slot_rows,
    int use_index, const unsigned* index, long long index_stride, long long offset,
    int rows, int cols, int batch, int has_labels, int has_values) {
    int lane = blockIdx.y;
    long long slot = slot_of_lane[lane];
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < rows * cols; e += gridDim.x * blockDim.x) {
        int r = e / cols, c = e - r * cols;
        long long row = use_index ? (long long)index[lane * index_stride + offset + r] : offset + r;
        long long src = slot * slot_rows + row;
        x[((long long)lane * batch + r) * cols + c] = data[src * cols + c];
        if (c == 0) {
            if (has_labels) labels[lane * batch + r] = data_labels[src];
            if (has_values) values[lane * batch + r] = data_values[src];
        }
    }
}

#define TILE 64
#define TILE_K 16

// C (M x N) = A (M x K) . B (K x N) for one lane, with A(m, k) = a[m * a_rs + k * a_cs] and
// B(k, n) = b[k * b_rs + n * b_cs]; 256 threads, each 4 x 4 outputs. Each output's sum runs
// over k in order in one thread. Tiles are read along whichever index is contiguous in memory,
// so that a warp's loads coalesce for every transposition, and the next tile's loads are in
// flight (in registers) while the current one is multiplied.
__device__ __forceinline__ void tile_product(
    const float* a, long long a_rs, long long a_cs,
    const float* b, long long b_rs, long long b_cs,
    int M, int N, int K, float acc[4][4]) {
    __shared__ float as[TILE_K][TILE + 1];
    __shared__ float bs[TILE_K][TILE + 1];
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    bool a_along_k = a_cs == 1, b_along_n = b_cs == 1;
    float ra[4], rb[4];
    // Element e of a stage: (kk, mm) of A and (kb, nn) of B, the contiguous index fastest.
    auto a_at = [&](int e, int* kk, int* mm) {
        if (a_along_k) { *kk = e % TILE_K; *mm = e / TILE_K; }
        else { *mm = e % TILE; *kk = e / TILE; }
    };
    auto b_at = [&](int e, int* kb, int* nn) {
        if (b_along_n) { *nn = e % TILE; *kb = e / TILE; }
        else { *kb = e % TILE_K; *nn = e / TILE_K; }
    };
    auto fetch = [&](int k0) {
        for (int i = 0; i < 4; i++) {
            int e = threadIdx.x + 256 * i, kk, mm, kb, nn;
            a_at(e, &kk, &mm);
            int m = m0 + mm, k = k0 + kk;
            ra[i] = (m < M && k < K) ? a[m * a_rs + k * a_cs] : 0.0f;
            b_at(e, &kb, &nn);
            int n = n0 + nn, k2 = k0 + kb;
            rb[i] = (n < N && k2 < K) ? b[k2 * b_rs + n * b_cs] : 0.0f;
        }
    };
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    fetch(0);
    for (int k0 = 0; k0 < K; k0 += TILE_K) {
        for (int i = 0; i < 4; i++) {
            int e = threadIdx.x + 256 * i, kk, mm, kb, nn;
            a_at(e, &kk, &mm);
            as[kk][mm] = ra[i];
            b_at(e, &kb, &nn);
            bs[kb][nn] = rb[i];
        }
        __syncthreads();
        if (k0 + TILE_K < K) fetch(k0 + TILE_K);
        int kmax = min(TILE_K, K - k0);
        for (int kk = 0; kk < kmax; kk++) {
            float av[4], bv[4];
            for (int i = 0; i < 4; i++) av[i] = as[kk][ty + 16 * i];
            for (int j = 0; j < 4; j++) bv[j] = bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
}

// A layer's forward pass for every lane: z = x W^T + b, then for a hidden layer a = f(z) and,
// with slopes, s = f'(z); the output layer keeps z. Grid: (N tiles, M tiles, lanes).
extern "C" __global__ void __launch_bounds__(256) linear_forward(
    const float* x, int in_width,
    const float* params, int params_per_lane, int w_off, int b_off,
    float* z, float* a, float* s, int rows, int out_width, int batch,
    int mode, const int* table_of_lane, const float* tables) {
    int lane = blockIdx.z;
    const float* xl = x + (long long)lane * batch * in_width;
    const float* p = params + (long long)lane * params_per_lane;
    float acc[4][4];
    // B(k, n) = W[n][k].
    tile_product(xl, in_width, 1, p + w_off, 1, in_width, rows, out_width, in_width, acc);
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int table = table_of_lane[lane];
    long long base = (long long)lane * batch * out_width;
    for (int i = 0; i < 4; i++) {
        int m = blockIdx.y * TILE + ty + 16 * i;
        if (m >= rows) continue;
        for (int j = 0; j < 4; j++) {
            int n = blockIdx.x * TILE + tx + 16 * j;
            if (n >= out_width) continue;
            float v = acc[i][j] + p[b_off + n];
            long long o = base + (long long)m * out_width + n;
            if (mode == 0) {
                z[o] = v;
            } else {
                float f, d;
                activation(v, table, tables, &f, &d);
                a[o] = f;
                if (mode == 1) s[o] = d;
            }
        }
    }
}

// dW = dz^T x for every lane, into the gradient buffer. Grid: (in tiles, out tiles, lanes).
extern "C" __global__ void __launch_bounds__(256) weight_gradient(
    const float* dz, const float* x, float* grads, int params_per_lane, int w_off,
    int rows, int out_width, int in_width, int batch) {
    int lane = blockIdx.z;
    const float* d = dz + (long long)lane * batch * out_width;
    const float* xl = x + (long long)lane * batch * in_width;
    float acc[4][4];
    // A(n, m) = dz[m][n], B(m, k) = x[m][k]: M = out_width, N = in_width, K = rows.
    tile_product(d, 1, out_width, xl, in_width, 1, out_width, in_width, rows, acc);
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float* g = grads + (long long)lane * params_per_lane + w_off;
    for (int i = 0; i < 4; i++) {
        int n = blockIdx.y * TILE + ty + 16 * i;
        if (n >= out_width) continue;
        for (int j = 0; j < 4; j++) {
            int k = blockIdx.x * TILE + tx + 16 * j;
            if (k < in_width) g[(long long)n * in_width + k] = acc[i][j];
        }
    }
}

// The gradient below a layer, through the activation: dz_prev = (dz W) * s_prev.
// Grid: (in tiles, row tiles, lanes).
extern "C" __global__ void __launch_bounds__(256) input_gradient(
    const float* dz, const float* params, int params_per_lane, int w_off,
    const float* s_prev, float* dz_prev, int rows, int out_width, int in_width, int batch) {
    int lane = blockIdx.z;
    const float* d = dz + (long long)lane * batch * out_width;
    const float* w = params + (long long)lane * params_per_lane + w_off;
    float acc[4][4];
    // A(m, n) = dz[m][n], B(n, k) = W[n][k].
    tile_product(d, out_width, 1, w, in_width, 1, rows, in_width, out_width, acc);
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    long long base = (long long)lane * batch * in_width;
    for (int i = 0; i < 4; i++) {
        int m = blockIdx.y * TILE + ty + 16 * i;
        if (m >= rows) continue;
        for (int j = 0; j < 4; j++) {
            int k = blockIdx.x * TILE + tx + 16 * j;
            if (k >= in_width) continue;
            long long o = base + (long long)m * in_width + k;
            dz_prev[o] = s_prev[o] * acc[i][j];
        }
    }
}

// db = column sums of dz, row by row as the CPU sums them. Grid: (column blocks, lanes).
extern "C" __global__ void bias_gradient(
    const float* dz, float* grads, int params_per_lane, int b_off, int rows, int width, int batch) {
    int lane = blockIdx.y;
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= width) return;
    const float* d = dz + (long long)lane * batch * width;
    float sum = 0.0f;
    for (int m = 0; m < rows; m++) sum += d[(long long)m * width + n];
    grads[(long long)lane * params_per_lane + b_off + n] = sum;
}

#define LOSS_THREADS 128

// The mean loss of the rows of every lane (one block per lane): softmax cross-entropy
// (classes > 0) or the mean squared error (classes == 0), in double as on the CPU. In training
// (step > 0) it writes the gradient with respect to the outputs and keeps the loss for
// check_loss; in validation (step == 0) it accumulates the summed loss and the correct count.
extern "C" __global__ void __launch_bounds__(LOSS_THREADS) loss(
    const float* z, const unsigned* labels, const float* values, float* dz,
    int rows, int classes, int batch, u64 step, double* step_loss,
    double* valid_loss, u64* correct) {
    __shared__ double part[LOSS_THREADS];
    __shared__ unsigned hits[LOSS_THREADS];
    int lane = blockIdx.x;
    int width = classes > 0 ? classes : 1;
    const float* zl = z + (long long)lane * batch * width;
    float* g = dz + (long long)lane * batch * width;
    double total = 0.0;
    unsigned right = 0;
    for (int r = threadIdx.x; r < rows; r += LOSS_THREADS) {
        const float* row = zl + (long long)r * width;
        if (classes > 0) {
            unsigned label = labels[lane * batch + r];
            int best = 0;
            float max = __int_as_float(0xff800000);
            for (int i = 0; i < classes; i++)
                if (row[i] > max) { max = row[i]; best = i; }
            right += best == (int)label;
            double sum = 0.0;
            for (int i = 0; i < classes; i++) sum += exp((double)(row[i] - max));
            double lse = log(sum) + (double)max;
            total += lse - (double)row[label];
            if (step > 0)
                for (int i = 0; i < classes; i++) {
                    double p = exp((double)row[i] - lse);
                    g[(long long)r * width + i] = (float)((p - (i == (int)label ? 1.0 : 0.0)) / rows);
                }
        } else {
            double diff = (double)row[0] - (double)values[lane * batch + r];
            total += diff * diff;
            if (step > 0) g[r] = (float)(2.0 * diff / rows);
        }
    }
    part[threadIdx.x] = total;
    hits[threadIdx.x] = right;
    __syncthreads();
    for (int half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            part[threadIdx.x] += part[threadIdx.x + half];
            hits[threadIdx.x] += hits[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x != 0) return;
    double mean = part[0] / rows;
    if (step > 0) {
        step_loss[lane] = mean;
    } else {
        valid_loss[lane] += mean * rows;
        correct[lane] += hits[0];
    }
}

// The first training step whose loss plus the lane's penalty is not finite, per lane. Its own
// launch, after the penalty has arrived from the host.
extern "C" __global__ void check_loss(
    const double* step_loss, const double* penalty, u64* failed_step, double* failed_loss,
    int lanes, u64 step) {
    int lane = blockIdx.x * blockDim.x + threadIdx.x;
    if (lane >= lanes) return;
    double with_penalty = step_loss[lane] + penalty[lane];
    if (!isfinite(with_penalty) && failed_step[lane] == 0) {
        failed_step[lane] = step;
        failed_loss[lane] = with_penalty;
    }
}

// One Adam step over every parameter of every lane (PyTorch's formulation, as
// kernels::adam_step); with `has_reg`, `reg` is added to the gradient first.
extern "C" __global__ void adam(
    float* params, const float* grads, int has_reg, const float* reg, float* m, float* v, long long n,
    float beta1, float beta2, float eps, float step_size, float bias2_sqrt) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float g = grads[i];
        if (has_reg) g += reg[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= step_size * mi / (sqrtf(vi) / bias2_sqrt + eps);
    }
}

extern "C" __global__ void sgd(
    float* params, const float* grads, int has_reg, const float* reg, long long n, float lr) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float g = grads[i];
        if (has_reg) g += reg[i];
        params[i] -= lr * g;
    }
}
