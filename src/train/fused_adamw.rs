//! AdamW fused into two in-place kernels per parameter, for the device step: one updates the
//! moments, one the parameter, both reading the step's flags from the device, so the update
//! needs no host read and a step found non-finite on the device leaves everything as it was.
//!
//! ```text
//! flags = [ok, t, clip]               one (3,) f32 tensor per step, made on the device
//! moments:  if ok: g = clip·grad;  m ← b1·m + (1−b1)·g;  v ← b2·v + (1−b2)·g·g
//! param:    if ok: p ← p·(1−lr·wd) − (lr / (1−b1ᵗ)) · m / (√v / √(1−b2ᵗ) + eps)
//! ```
//!
//! `ok` is 1 when the step's loss and gradient norm are finite (0 skips the step: torch's
//! `fused=True` AdamW takes a `found_inf` tensor the same way), `t` the number of updates
//! applied including this one (the bias corrections' step, kept on the device because it only
//! advances on ok steps), `clip` torch's `clip_grad_norm_` factor. The formula, its order of
//! operations and `powi` are those of the host [`AdamW`](super::optim::AdamW), so the CPU
//! implementation here equals it exactly; the CUDA kernel is the same code in C
//! (`fused_adamw.cu`), built to PTX by build.rs with FMA contraction off (the CPU's f32
//! arithmetic, rounded per operation).
//! A parameter's moments are one contiguous `(2n,)` tensor: `m` then `v`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp3, Layout};
use rayon::prelude::*;

/// Elements per parallel chunk on the CPU (as the host AdamW).
const CHUNK: usize = 1 << 14;

/// The moments half of the update (first kernel).
#[derive(Debug, Clone, Copy)]
pub(super) struct MomentsUpdate {
    pub beta1: f32,
    pub beta2: f32,
}

/// The parameter half of the update (second kernel; after [`MomentsUpdate`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct ParamUpdate {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `1 − lr·wd` where the parameter decays, else 1.
    pub decay: f32,
}

/// The step's flags as the kernels read them.
#[derive(Debug, Clone, Copy)]
struct Flags {
    ok: bool,
    t: i32,
    clip: f32,
}

impl Flags {
    fn read(values: &[f32]) -> candle_core::Result<Self> {
        match values {
            [ok, t, clip] => Ok(Self {
                ok: *ok != 0.0,
                t: *t as i32,
                clip: *clip,
            }),
            _ => candle_core::bail!(
                "adamw: expected 3 step flags [ok, t, clip], found {}",
                values.len()
            ),
        }
    }
}

impl ParamUpdate {
    /// `(lr / (1−b1ᵗ), √(1−b2ᵗ))` in f32, as the host AdamW computes them.
    fn step_size_and_bias2_sqrt(&self, t: i32) -> (f32, f32) {
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        (self.lr / bias1, bias2.sqrt())
    }
}

fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &'static str,
) -> candle_core::Result<&'a [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32, found {dtype:?}");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(candle_core::Error::RequiresContiguous { op });
    };
    Ok(&data[start..end])
}

fn contiguous_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &'static str,
) -> candle_core::Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32, found {dtype:?}");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(candle_core::Error::RequiresContiguous { op });
    };
    Ok(&mut data[start..end])
}

fn check_moments(op: &str, moments: usize, n: usize) -> candle_core::Result<()> {
    if moments != 2 * n {
        candle_core::bail!("{op}: {moments} moment values for {n} parameter values (expected 2n)");
    }
    Ok(())
}

impl InplaceOp3 for MomentsUpdate {
    fn name(&self) -> &'static str {
        "crossdistill-adamw-moments"
    }

    /// `dst`: the moments `(2n,)`; `grad`: `(n,)`; `flags`: `(3,)`.
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
        flags: &CpuStorage,
        flags_l: &Layout,
    ) -> candle_core::Result<()> {
        let op = self.name();
        let flags = Flags::read(contiguous(flags, flags_l, op)?)?;
        let grad = contiguous(grad, grad_l, op)?;
        let moments = contiguous_mut(dst, dst_l, op)?;
        check_moments(op, moments.len(), grad.len())?;
        if !flags.ok {
            return Ok(());
        }
        let (b1, b2, clip) = (self.beta1, self.beta2, flags.clip);
        let (m, v) = moments.split_at_mut(grad.len());
        m.par_chunks_mut(CHUNK)
            .zip(v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|((m, v), grad)| {
                for ((m, v), &g) in m.iter_mut().zip(v).zip(grad) {
                    let g = g * clip;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                }
            });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        grad: &candle_core::CudaStorage,
        grad_l: &Layout,
        flags: &candle_core::CudaStorage,
        flags_l: &Layout,
    ) -> candle_core::Result<()> {
        let n = grad_l.shape().elem_count();
        check_moments(self.name(), dst_l.shape().elem_count(), n)?;
        let scalars = [self.beta1, self.beta2];
        cuda::launch(
            "crossdistill_adamw_moments",
            self.name(),
            n,
            dst,
            dst_l,
            grad,
            grad_l,
            flags,
            flags_l,
            &scalars,
        )
    }
}

impl InplaceOp3 for ParamUpdate {
    fn name(&self) -> &'static str {
        "crossdistill-adamw-param"
    }

    /// `dst`: the parameter `(n,)` (any shape, contiguous); `moments`: `(2n,)` already updated
    /// by [`MomentsUpdate`]; `flags`: `(3,)`.
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        moments: &CpuStorage,
        moments_l: &Layout,
        flags: &CpuStorage,
        flags_l: &Layout,
    ) -> candle_core::Result<()> {
        let op = self.name();
        let flags = Flags::read(contiguous(flags, flags_l, op)?)?;
        let moments = contiguous(moments, moments_l, op)?;
        let params = contiguous_mut(dst, dst_l, op)?;
        check_moments(op, moments.len(), params.len())?;
        if !flags.ok {
            return Ok(());
        }
        let (step_size, bias2_sqrt) = self.step_size_and_bias2_sqrt(flags.t);
        let (eps, decay) = (self.eps, self.decay);
        let (m, v) = moments.split_at(params.len());
        params
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK))
            .zip(v.par_chunks(CHUNK))
            .for_each(|((p, m), v)| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    *p *= decay;
                    let denom = v.sqrt() / bias2_sqrt + eps;
                    *p -= step_size * m / denom;
                }
            });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        moments: &candle_core::CudaStorage,
        moments_l: &Layout,
        flags: &candle_core::CudaStorage,
        flags_l: &Layout,
    ) -> candle_core::Result<()> {
        let n = dst_l.shape().elem_count();
        check_moments(self.name(), moments_l.shape().elem_count(), n)?;
        let scalars = [self.lr, self.beta1, self.beta2, self.eps, self.decay];
        cuda::launch(
            "crossdistill_adamw_param",
            self.name(),
            n,
            dst,
            dst_l,
            moments,
            moments_l,
            flags,
            flags_l,
            &scalars,
        )
    }
}

/// The CUDA kernels' source (`fused_adamw.cu`: C, the CPU loops above, one thread per element),
/// which the tests compile for the host.
#[cfg(test)]
const KERNELS: &str = include_str!("fused_adamw.cu");

/// Launching the kernels of `fused_adamw.cu` on a CUDA device.
#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda::WrapErr;
    use candle_core::{CudaStorage, Layout};

    const MODULE: &str = "crossdistill_adamw";

    /// `fused_adamw.cu` as PTX for `compute_75` (any GPU CUDA 13 supports; the driver compiles it for
    /// the GPU at load), built by build.rs with the toolkit's nvcc, as candle builds its own.
    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused_adamw.ptx"));

    fn offsets(layout: &Layout, op: &'static str) -> candle_core::Result<(usize, usize)> {
        layout
            .contiguous_offsets()
            .ok_or(candle_core::Error::RequiresContiguous { op })
    }

    /// Launch `kernel(n, dst, src, flags, scalars…)`, both kernels' signature, over `n` elements
    /// (`op` names the op in errors). The lengths were checked by the caller: `dst` and `src` are
    /// n and 2n (or 2n and n), `flags` 3.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn launch(
        kernel: &str,
        op: &'static str,
        n: usize,
        dst: &mut CudaStorage,
        dst_l: &Layout,
        src: &CudaStorage,
        src_l: &Layout,
        flags: &CudaStorage,
        flags_l: &Layout,
        scalars: &[f32],
    ) -> candle_core::Result<()> {
        let func = dst.device.get_or_load_custom_func(kernel, MODULE, PTX)?;
        let (d0, d1) = offsets(dst_l, op)?;
        let (s0, s1) = offsets(src_l, op)?;
        let (f0, f1) = offsets(flags_l, op)?;
        let src = src.as_cuda_slice::<f32>()?.slice(s0..s1);
        let flags = flags.as_cuda_slice::<f32>()?.slice(f0..f1);
        let mut dst = dst.as_cuda_slice_mut::<f32>()?.slice_mut(d0..d1);
        let mut builder = func.builder();
        builder.arg(&n);
        builder.arg(&mut dst);
        builder.arg(&src);
        builder.arg(&flags);
        for scalar in scalars {
            builder.arg(scalar);
        }
        // SAFETY: the arguments match the kernel's signature in fused_adamw.cu and every slice
        // holds what the kernel indexes (the lengths above).
        unsafe { builder.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn flags(ok: f32, t: f32, clip: f32) -> Tensor {
        Tensor::new(&[ok, t, clip], &Device::Cpu).unwrap()
    }

    /// torch.optim.AdamW(lr=0.1, weight_decay=0.5) on p = 1 with gradients 0.5 then −0.25 (the
    /// host AdamW's test): 0.85 after the first step; a step with ok = 0 in between changes
    /// nothing, and the clip factor scales the gradient.
    #[test]
    fn the_fused_update_is_torchs_adamw_and_a_not_ok_step_is_a_no_op() {
        let dev = Device::Cpu;
        let param = Tensor::new(&[1f32], &dev).unwrap();
        let moments = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        let (b1, b2) = (0.9, 0.999);
        let moments_op = MomentsUpdate {
            beta1: b1,
            beta2: b2,
        };
        let param_op = ParamUpdate {
            lr: 0.1,
            beta1: b1,
            beta2: b2,
            eps: 1e-8,
            decay: 1.0 - 0.1 * 0.5,
        };
        let step = |grad: f32, flags: &Tensor| {
            let grad = Tensor::new(&[grad], &dev).unwrap();
            moments.inplace_op3(&grad, flags, &moments_op).unwrap();
            param.inplace_op3(&moments, flags, &param_op).unwrap();
            param.to_vec1::<f32>().unwrap()[0]
        };
        // The gradient 1.0 clipped by 0.5 is the 0.5 of torch's example.
        let p1 = step(1.0, &flags(1.0, 1.0, 0.5));
        assert!((p1 - 0.85).abs() < 1e-6, "{p1}");
        let before: Vec<f32> = moments.to_vec1().unwrap();
        let skipped = step(f32::NAN, &flags(0.0, 1.0, f32::NAN));
        assert_eq!(skipped, p1);
        assert_eq!(moments.to_vec1::<f32>().unwrap(), before);
        // torch, step 2 (gradient −0.25): p = 0.85·0.95 − 0.1·m̂/(√v̂ + eps).
        let p2 = step(-0.25, &flags(1.0, 2.0, 1.0));
        let (m, v) = (
            0.9 * 0.05 + 0.1 * -0.25f64,
            0.999 * 0.00025 + 0.001 * 0.0625,
        );
        let (m_hat, v_hat) = (m / (1.0 - 0.81), v / (1.0 - 0.999f64.powi(2)));
        let expected = 0.85 * 0.95 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!(
            (f64::from(p2) - expected).abs() < 1e-6,
            "{p2} vs {expected}"
        );
    }

    /// The host's C compiler runs [`KERNELS`] as one thread (`blockIdx = threadIdx = 0`,
    /// `blockDim = gridDim = 1`: the grid-stride loop visits every element) with the CUDA
    /// qualifiers defined away; fed through stdin/stdout as raw f32.
    const HARNESS: &str = r#"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#define __device__ static
#define __global__
struct dim3_ { unsigned x; };
static const struct dim3_ blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
@KERNELS@
static float *read_floats(size_t count) {
    float *values = malloc(count * sizeof(float));
    if (fread(values, sizeof(float), count, stdin) != count) exit(3);
    return values;
}
int main(void) {
    /* header: n, steps, b1, b2, eps, wd; then params[n]; per step: lr, ok, t, clip, grad[n] */
    float *header = read_floats(6);
    size_t n = (size_t)header[0];
    int steps = (int)header[1];
    float b1 = header[2], b2 = header[3], eps = header[4], wd = header[5];
    float *params = read_floats(n);
    float *moments = calloc(2 * n, sizeof(float));
    for (int s = 0; s < steps; s++) {
        float *step = read_floats(4);
        float *grad = read_floats(n);
        float lr = step[0];
        crossdistill_adamw_moments(n, moments, grad, step + 1, b1, b2);
        crossdistill_adamw_param(n, params, moments, step + 1, lr, b1, b2, eps, 1.0f - lr * wd);
    }
    fwrite(params, sizeof(float), n, stdout);
    fwrite(moments, sizeof(float), 2 * n, stdout);
    return 0;
}
"#;

    #[test]
    fn the_cuda_kernels_compiled_for_the_host_equal_the_cpu_code_bit_for_bit() {
        use std::io::Write;
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("adamw.c");
        let program = dir.path().join("adamw");
        let kernels = KERNELS.replace("extern \"C\" ", "");
        std::fs::write(&source, HARNESS.replace("@KERNELS@", &kernels)).unwrap();
        let compiled = Command::new("cc")
            .args(["-O2", "-std=c11", "-ffp-contract=off", "-o"])
            .arg(&program)
            .arg(&source)
            .arg("-lm")
            .output()
            .expect("a C compiler `cc` (the Rust toolchain links with it)");
        assert!(
            compiled.status.success(),
            "{}",
            String::from_utf8_lossy(&compiled.stderr)
        );

        let n = 40_000usize;
        let (b1, b2, eps, wd) = (0.9f32, 0.999f32, 1e-8f32, 0.1f32);
        // Steps: applied, skipped (NaN gradient), applied with a clip, applied.
        let steps = [
            (1e-2f32, 1f32, 1f32, 1f32),
            (2e-2, 0.0, 1.0, f32::NAN),
            (3e-2, 1.0, 2.0, 0.25),
            (4e-2, 1.0, 3.0, 0.7),
        ];
        let values = |seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
                .collect()
        };
        let mut input: Vec<f32> = vec![n as f32, steps.len() as f32, b1, b2, eps, wd];
        input.extend(values(0));
        let dev = Device::Cpu;
        let param = Tensor::from_vec(values(0), n, &dev).unwrap();
        let moments = Tensor::zeros(2 * n, candle_core::DType::F32, &dev).unwrap();
        for (s, &(lr, ok, t, clip)) in steps.iter().enumerate() {
            let mut grad = values(s + 1);
            if ok == 0.0 {
                grad[n / 2] = f32::NAN;
            }
            input.extend([lr, ok, t, clip]);
            input.extend(&grad);
            let flags = flags(ok, t, clip);
            let grad = Tensor::from_vec(grad, n, &dev).unwrap();
            moments
                .inplace_op3(
                    &grad,
                    &flags,
                    &MomentsUpdate {
                        beta1: b1,
                        beta2: b2,
                    },
                )
                .unwrap();
            let op = ParamUpdate {
                lr,
                beta1: b1,
                beta2: b2,
                eps,
                decay: 1.0 - lr * wd,
            };
            param.inplace_op3(&moments, &flags, &op).unwrap();
        }

        let mut child = Command::new(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let bytes: Vec<u8> = input.iter().flat_map(|x| x.to_le_bytes()).collect();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{:?}", output.status);
        let from_c: Vec<f32> = output
            .stdout
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut from_rust: Vec<f32> = param.to_vec1().unwrap();
        from_rust.extend(moments.to_vec1::<f32>().unwrap());
        assert_eq!(from_c.len(), 3 * n);
        let differing = from_c
            .iter()
            .zip(&from_rust)
            .filter(|(c, r)| c.to_bits() != r.to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "values where the C kernels and the CPU code differ"
        );
        // The updates did something: the parameters moved.
        assert!(from_rust[..n].iter().zip(values(0)).any(|(p, p0)| *p != p0));
    }

    #[test]
    fn moments_of_the_wrong_size_and_bad_flags_are_errors() {
        let dev = Device::Cpu;
        let op = MomentsUpdate {
            beta1: 0.9,
            beta2: 0.999,
        };
        let moments = Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap();
        let grad = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        let err = moments
            .inplace_op3(&grad, &flags(1.0, 1.0, 1.0), &op)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 moment values for 2 parameter values"),
            "{err}"
        );
        let moments = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let err = moments
            .inplace_op3(&grad, &Tensor::new(&[1f32], &dev).unwrap(), &op)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 3 step flags"), "{err}");
    }
}
