//! The exact (erf) GELU and its derivative on f32 scalars, for the CPU kernels of [`super::ops`]
//! and [`super::fused`].

/// erf(x) in f32 as a rational function (Eigen's `generic_fast_erf_float`, also PyTorch's and
/// XLA's vectorised f32 erf): a few ulp from the exact value, branch-free, so loops over it
/// vectorise (libm's `erff` does not).
#[inline]
fn erf_fast(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Plain multiply-adds: `mul_add` without a compile-time FMA target is a libm call.
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    x * p / q
}

/// The exact GELU, `z Φ(z)`.
#[inline]
pub(super) fn gelu_erf(z: f32) -> f32 {
    0.5 * z * (1.0 + erf_fast(z * std::f32::consts::FRAC_1_SQRT_2))
}

/// d/dz of the exact GELU: `Φ(z) + z φ(z)`.
#[inline]
pub(super) fn gelu_erf_grad(z: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_fast(z * std::f32::consts::FRAC_1_SQRT_2));
    cdf + z * INV_SQRT_2PI * (-0.5 * z * z).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_matches_libm() {
        // Reference: libm's erff (candle's erf_f32), on a grid over [-6, 6].
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let exact = candle_core::cpu::erf::erf_f32(x);
            let fast = erf_fast(x);
            assert!((exact - fast).abs() <= 5e-7, "erf({x}): {fast} vs {exact}");
        }
    }
}
