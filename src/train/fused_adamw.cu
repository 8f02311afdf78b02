// The fused AdamW kernels of src/train/fused_adamw.rs: its CPU loops in C, one thread per element
// (grid-stride). `crossdistill_powi` is `powi` as LLVM's `__powisf2` computes it (what Rust's
// `f32::powi` calls), so `t` gives the same bias corrections as on the CPU. Built to PTX by build.rs
// with nvcc (--fmad=false: no FMA contraction, as the CPU's f32 arithmetic) when the `cuda`
// feature is on; the lib tests compile it for the host with `cc` and check it against the CPU code.
__device__ float crossdistill_powi(float a, int b) {
    const int recip = b < 0;
    float r = 1.0f;
    while (1) {
        if (b & 1) r *= a;
        b /= 2;
        if (b == 0) break;
        a *= a;
    }
    return recip ? 1.0f / r : r;
}

extern "C" __global__ void crossdistill_adamw_moments(
    const size_t n, float *moments, const float *grad, const float *flags,
    const float b1, const float b2) {
    if (flags[0] == 0.0f) return;
    const float clip = flags[2];
    float *m = moments;
    float *v = moments + n;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)blockDim.x * gridDim.x) {
        const float g = grad[i] * clip;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
    }
}

extern "C" __global__ void crossdistill_adamw_param(
    const size_t n, float *params, const float *moments, const float *flags,
    const float lr, const float b1, const float b2, const float eps, const float decay) {
    if (flags[0] == 0.0f) return;
    const int t = (int)flags[1];
    const float bias1 = 1.0f - crossdistill_powi(b1, t);
    const float bias2 = 1.0f - crossdistill_powi(b2, t);
    const float step_size = lr / bias1;
    const float bias2_sqrt = sqrtf(bias2);
    const float *m = moments;
    const float *v = moments + n;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)blockDim.x * gridDim.x) {
        float p = params[i] * decay;
        const float denom = sqrtf(v[i]) / bias2_sqrt + eps;
        params[i] = p - step_size * m[i] / denom;
    }
}
