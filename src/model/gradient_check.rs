//! Test helper: analytic gradients of the fused ops against central finite differences.

use candle_core::{Device, Result as CResult, Tensor, Var};

/// Central finite differences of `sum(f(x) * w)` against the analytic gradient, for a fixed,
/// non-uniform weighting `w` so every output element matters differently. Each element must
/// agree within `tol * (1 + |numeric|)`.
pub(crate) fn check_grad(
    x: &[f32],
    shape: &[usize],
    f: &dyn Fn(&Tensor) -> CResult<Tensor>,
    tol: f32,
) {
    let dev = Device::Cpu;
    let var = Var::from_vec(x.to_vec(), shape, &dev).unwrap();
    let out = f(var.as_tensor()).unwrap();
    let weights: Vec<f32> = (0..out.elem_count())
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
        .collect();
    let weights = Tensor::from_vec(weights, out.shape(), &dev).unwrap();
    let loss = out.mul(&weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let analytic = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let eval = |values: &[f32]| -> f64 {
        let t = Tensor::from_vec(values.to_vec(), shape, &dev).unwrap();
        let out = f(&t).unwrap();
        out.mul(&weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let h = 1e-2f32;
    for i in 0..x.len() {
        let mut plus = x.to_vec();
        plus[i] += h;
        let mut minus = x.to_vec();
        minus[i] -= h;
        let numeric = ((eval(&plus) - eval(&minus)) / (2.0 * h as f64)) as f32;
        assert!(
            (numeric - analytic[i]).abs() <= tol * (1.0 + numeric.abs()),
            "element {i}: numeric {numeric} vs analytic {}",
            analytic[i]
        );
    }
}
