//! Reading tensors as f32 slices on the CPU, for the hand-written kernels of [`super::ops`] and
//! [`super::fused`].

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Storage, Tensor};

type CResult<T> = candle_core::Result<T>;

/// Rows per rayon task: small tensors stay on one thread.
pub(super) const PAR_ROWS: usize = 64;

/// The contiguous f32 data of a CPU storage under `layout`; an error names `op` when the data
/// is not f32 or not contiguous.
pub(super) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &'static str,
) -> CResult<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        other => bail!("{op}: expected f32 input, found {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(candle_core::Error::RequiresContiguous { op }),
    }
}

/// Run `f` on the contiguous f32 CPU data of `t`.
pub(super) fn with_cpu_f32<R>(
    t: &Tensor,
    op: &'static str,
    f: impl FnOnce(&[f32]) -> R,
) -> CResult<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(f32_slice(cpu, layout, op)?)),
        _ => bail!("{op}: the fused kernel runs on CPU tensors only"),
    }
}

/// A vector of `n` f32 values that `write` fills through the pointer, without zero-filling the
/// memory first (the kernels' products overwrite their whole output: a memset before them only
/// costs a pass over memory).
///
/// # Safety
/// `write` must initialise all `n` elements (for instance with `gemm` not reading its
/// destination, over blocks that cover the buffer).
pub(super) unsafe fn written_f32(n: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut values = Vec::with_capacity(n);
    write(values.as_mut_ptr());
    // SAFETY: the caller's contract: all n elements are initialised.
    unsafe { values.set_len(n) };
    values
}
