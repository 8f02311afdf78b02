//! [`Precision`]: the floating-point type a model computes in (`--dtype`, `[teacher] dtype`,
//! `[train] precision`).
//!
//! Whatever the precision, parameters are stored and saved in f32, and scores and losses come
//! out in f32: a reduced-precision forward casts the f32 parameters to bf16/f16 (for training,
//! with `to_dtype`, which is differentiable, so gradients reach the f32 parameters in f32), runs
//! the matrix products and element-wise ops in that type, computes LayerNorm and softmax in f32
//! inside, and upcasts the logits to f32 before any activation or loss — as sentence-transformers
//! 6 does.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// The floating-point type of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats (the default; what every parity test pins).
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa.
    Bf16,
    /// IEEE half: 11 bits of mantissa, values up to 65504.
    F16,
}

impl Precision {
    /// Every precision as recipes and the CLI spell it.
    pub const NAMES: &'static [&'static str] = &["f32", "bf16", "f16"];

    /// How recipes and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The precision `name` spells; `None` for any other word.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Precision::F32),
            "bf16" => Some(Precision::Bf16),
            "f16" => Some(Precision::F16),
            _ => None,
        }
    }

    /// [`Precision::from_name`], with an error that lists the names.
    pub fn parse(name: &str) -> Result<Self> {
        Self::from_name(name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown precision `{name}`; expected one of {}",
                Self::NAMES.join(", ")
            ))
        })
    }

    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Whether this is the f32 default.
    pub fn is_f32(self) -> bool {
        self == Precision::F32
    }
}

/// Why bf16/f16 is refused on the CPU: measured on this project's CPU (AMD EPYC with AVX-512
/// BF16, 2 shared cores; `bench/precision_cpu.rs`), candle 0.11's bf16 matmul ran 0.80–0.86× its
/// f32 speed, its f16 matmul 0.71–1.09×, its bf16/f16 element-wise ops 0.70–0.84×, and a
/// reduced-precision forward gives up the fused f32 CPU kernels: `predict` of a MiniLM-L6-shaped
/// model took 1.43× (bf16) and 1.77× (f16) the f32 time. On the CPU, f32 is faster and exact.
pub(crate) const CPU_REFUSAL: &str = "on the CPU, candle's bf16/f16 kernels are no faster than f32 (measured: matmul 0.7-1.1x, element-wise ops 0.7-0.84x, MiniLM-L6 predict 1.43x slower in bf16 and 1.77x in f16), so crossdistill runs reduced precision on CUDA only";

/// Set to `1` to allow bf16/f16 on the CPU anyway (for measuring the numerics; slower than f32).
pub const CPU_PRECISION_ENV: &str = "CROSSDISTILL_CPU_REDUCED_PRECISION";

impl Precision {
    /// Refuse a reduced precision on the CPU ([`CPU_REFUSAL`] says why); `setting` names what
    /// asked for it (`--dtype`, `train.precision`, ...). The library's
    /// [`super::CrossEncoder::load`] does not check: tests run the reduced-precision numerics on
    /// the CPU through it.
    ///
    /// [`CPU_PRECISION_ENV`]` = 1` lifts the refusal: reduced-precision numerics (a bf16 loss
    /// curve beside the f32 one) can be measured on a machine without a GPU, at the CPU's speed.
    pub fn check_device(self, device: &Device, setting: &str) -> Result<()> {
        if self.is_f32() || !device.is_cpu() {
            return Ok(());
        }
        if std::env::var(CPU_PRECISION_ENV).is_ok_and(|v| v == "1") {
            return Ok(());
        }
        // `--dtype bf16` on the command line, `train.precision = "bf16"` in a recipe.
        let spelled = |precision: Precision| match setting.starts_with("--") {
            true => format!("{setting} {precision}"),
            false => format!("{setting} = \"{precision}\""),
        };
        Err(Error::invalid(format!(
            "{} asked for on the CPU, but {CPU_REFUSAL}",
            spelled(self)
        ))
        .with_hint(format!(
            "use {} on the CPU, or a CUDA device (a build with --features cuda); {CPU_PRECISION_ENV}=1 allows it on the CPU anyway, to measure its numerics",
            spelled(Precision::F32)
        )))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for name in Precision::NAMES {
            assert_eq!(Precision::parse(name).unwrap().name(), *name);
        }
        assert_eq!(Precision::default().dtype(), DType::F32);
        let error = Precision::parse("fp16").unwrap_err().to_string();
        assert!(
            error.contains("unknown precision `fp16`; expected one of f32, bf16, f16"),
            "{error}"
        );
    }
}
