//! Test helpers shared by the loss tests: f64 tensors, scalar reads and a central-difference
//! gradient check against `Tensor::backward`.

use candle_core::{DType, Device, Tensor, Var};

use crate::error::Result;

/// A CPU f64 tensor of `shape` from `values`.
pub(crate) fn t64(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).expect("test tensor shape matches")
}

/// A CPU f64 matrix from rows of equal length.
pub(crate) fn m64(rows: &[&[f64]]) -> Tensor {
    let cols = rows.first().map_or(0, |r| r.len());
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    t64(&flat, &[rows.len(), cols])
}

/// The value of a scalar tensor as f64.
pub(crate) fn scalar(xs: &Tensor) -> f64 {
    xs.to_dtype(DType::F64)
        .and_then(|x| x.to_scalar::<f64>())
        .expect("loss is a scalar")
}

/// Asserts `|got - expected| <= tol`, with both numbers in the message.
#[track_caller]
pub(crate) fn assert_close(got: f64, expected: f64, tol: f64) {
    assert!(
        (got - expected).abs() <= tol,
        "got {got}, expected {expected} (tolerance {tol}, off by {})",
        (got - expected).abs()
    );
}

/// Compares the gradient `backward()` gives for `loss(x)` at `x0` (f64) with central
/// differences `(L(x + h e_i) - L(x - h e_i)) / 2h`, element by element.
#[track_caller]
pub(crate) fn check_gradient(
    x0: &[f64],
    shape: &[usize],
    tol: f64,
    loss: impl Fn(&Tensor) -> Result<Tensor>,
) {
    let var = Var::from_tensor(&t64(x0, shape)).expect("f64 var");
    let value = loss(var.as_tensor()).expect("loss computes");
    let grads = value.backward().expect("backward runs");
    let analytic: Vec<f64> = grads
        .get(&var)
        .expect("the loss depends on the logits")
        .flatten_all()
        .and_then(|g| g.to_vec1())
        .expect("f64 gradient");
    let h = 1e-6;
    for i in 0..x0.len() {
        let mut plus = x0.to_vec();
        plus[i] += h;
        let mut minus = x0.to_vec();
        minus[i] -= h;
        let up = scalar(&loss(&t64(&plus, shape)).expect("loss computes"));
        let down = scalar(&loss(&t64(&minus, shape)).expect("loss computes"));
        let numeric = (up - down) / (2.0 * h);
        assert!(
            (analytic[i] - numeric).abs() <= tol * (1.0 + numeric.abs()),
            "gradient {i}: backward gives {}, central difference {numeric}",
            analytic[i]
        );
    }
}
