//! Fused CPU kernels for the encoder's dense layers, attention and dropout.
//!
//! candle's backward pass gives every recorded op a zero-filled gradient buffer plus an add, and
//! its batched matmul runs the `B × heads` small attention products one after another on one
//! thread. Written as a few `CustomOp`s on `gemm` directly, a layer records a dozen nodes instead
//! of forty, attention runs its heads in parallel without the head-split copies, and the
//! backward passes compute exactly the products they need:
//! - [`linear_fused`]: `act(x Wᵀ + b) ⊙ dropout` with `act` identity or exact GELU;
//! - [`attention_fused`]: `softmax(scale · Q Kᵀ, key mask) ⊙ dropout · V` over heads of
//!   `(B, L, H)` projections, written straight back as `(B, L, H)`;
//! - [`dropout_fused`]: `x ⊙ mask` with the mask kept in the op.
//!
//! Intermediates the backward pass needs (GELU's pre-activation, attention probabilities) are
//! kept only when an input records a graph, so inference keeps nothing.
//! CPU and f32 only; [`super::ops`] picks these or the composed candle ops (this file imports
//! nothing from it).

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::cpu_f32::{f32_slice, with_cpu_f32, written_f32, PAR_ROWS};
use super::gelu::{gelu_erf, gelu_erf_grad};

type CResult<T> = candle_core::Result<T>;

/// A strided, read-only matrix view: element `(i, j)` at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(super) struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl View {
    pub(super) fn rows(data: &[f32], offset: usize, row_stride: usize) -> Self {
        Self {
            ptr: data[offset..].as_ptr(),
            rs: row_stride as isize,
            cs: 1,
        }
    }

    /// The transpose of the row-major matrix at `data[offset..]` with row stride `row_stride`.
    pub(super) fn transposed(data: &[f32], offset: usize, row_stride: usize) -> Self {
        Self {
            ptr: data[offset..].as_ptr(),
            rs: 1,
            cs: row_stride as isize,
        }
    }
}

/// A raw output pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(super) struct SharedMut(pub(super) *mut f32);

// SAFETY: every user writes a region no other task touches (see the call sites).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `dst (m × n, row stride dst_rs) [+]= lhs (m × k) · rhs (k × n)`.
///
/// # Safety
/// `dst` must be valid for writes of the `m × n` block and the views valid for reads of their
/// blocks; nothing else may touch the `dst` block meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    parallelism: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    )
}

pub(super) fn all_threads() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// Column sums of a row-major `(rows, width)` matrix. The blocks' partial sums are added in
/// block order: a rayon `reduce` would add them in whatever tree work stealing made, so the last
/// bits (and a resumed run's weights) would change from run to run.
fn column_sums(xs: &[f32], width: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = xs
        .par_chunks(width * PAR_ROWS)
        .map(|rows| {
            let mut sums = vec![0f32; width];
            for row in rows.chunks(width) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sums
        })
        .collect();
    let mut sums = vec![0f32; width];
    for partial in partials {
        sums.iter_mut().zip(&partial).for_each(|(s, v)| *s += v);
    }
    sums
}

// ---------------------------------------------------------------------------------------------
// Linear (+ GELU) (+ dropout)

/// The activation a dense layer applies to `x Wᵀ + b` ([`super::ops::dense`], [`linear_fused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// None.
    Identity,
    /// Exact (erf) GELU.
    GeluErf,
}

struct LinearOp {
    activation: DenseActivation,
    /// Dropout multipliers (0 or 1 / (1 − p)) per output element.
    dropout: Option<Vec<f32>>,
    /// Keep the GELU pre-activation for the backward pass.
    keep: bool,
    pre_activation: Mutex<Option<Vec<f32>>>,
}

impl LinearOp {
    fn dims(&self, x: &Layout, w: &Layout, b: &Layout) -> CResult<(usize, usize, usize)> {
        let in_dim = *x.shape().dims().last().unwrap_or(&0);
        let (out_dim, w_in) = w.shape().dims2()?;
        if in_dim == 0 || w_in != in_dim || b.shape().elem_count() != out_dim {
            bail!(
                "linear: input {:?}, weight {:?} and bias {:?} do not fit (x (.., in), W (out, in), b (out))",
                x.shape(),
                w.shape(),
                b.shape()
            );
        }
        Ok((x.shape().elem_count() / in_dim, in_dim, out_dim))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "crossdistill-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (rows, in_dim, out_dim) = self.dims(l1, l2, l3)?;
        let xs = f32_slice(s1, l1, self.name())?;
        let weight = f32_slice(s2, l2, self.name())?;
        let bias = f32_slice(s3, l3, self.name())?;
        if let Some(mask) = &self.dropout {
            if mask.len() != rows * out_dim {
                bail!(
                    "linear: dropout mask of {} elements for an output of {rows} × {out_dim}",
                    mask.len()
                );
            }
        }
        let mut zs = vec![0f32; rows * out_dim];
        zs.par_chunks_mut(out_dim * PAR_ROWS).for_each(|block| {
            block
                .chunks_mut(out_dim)
                .for_each(|row| row.copy_from_slice(bias))
        });
        // SAFETY: zs holds rows × out_dim; x is (rows, in) and W (out, in), both contiguous.
        unsafe {
            matmul(
                rows,
                out_dim,
                in_dim,
                zs.as_mut_ptr(),
                out_dim,
                true,
                View::rows(xs, 0, in_dim),
                View::transposed(weight, 0, in_dim),
                all_threads(),
            )
        };
        let ys = match self.activation {
            DenseActivation::Identity => {
                if let Some(mask) = &self.dropout {
                    zs.par_iter_mut().zip(mask).for_each(|(z, m)| *z *= m);
                }
                zs
            }
            DenseActivation::GeluErf => {
                let mut ys = vec![0f32; zs.len()];
                let chunk = out_dim * PAR_ROWS;
                match &self.dropout {
                    Some(mask) => ys
                        .par_chunks_mut(chunk)
                        .zip(zs.par_chunks(chunk).zip(mask.par_chunks(chunk)))
                        .for_each(|(y, (z, m))| {
                            for i in 0..y.len() {
                                y[i] = gelu_erf(z[i]) * m[i];
                            }
                        }),
                    None => {
                        ys.par_chunks_mut(chunk)
                            .zip(zs.par_chunks(chunk))
                            .for_each(|(y, z)| {
                                for i in 0..y.len() {
                                    y[i] = gelu_erf(z[i]);
                                }
                            })
                    }
                }
                if self.keep {
                    *self
                        .pre_activation
                        .lock()
                        .expect("no panic while holding it") = Some(zs);
                }
                ys
            }
        };
        let mut dims = l1.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = out_dim;
        }
        Ok((CpuStorage::F32(ys), Shape::from(dims)))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out_dim, in_dim) = weight.dims2()?;
        let rows = xs.elem_count() / in_dim.max(1);
        // dz: the gradient at the pre-activation.
        let dz = with_cpu_f32(grad, self.name(), |g| -> CResult<Vec<f32>> {
            let mut dz = g.to_vec();
            if let Some(mask) = &self.dropout {
                dz.par_iter_mut().zip(mask).for_each(|(d, m)| *d *= m);
            }
            if self.activation == DenseActivation::GeluErf {
                let kept = self
                    .pre_activation
                    .lock()
                    .expect("no panic while holding it");
                let Some(zs) = kept.as_ref() else {
                    bail!("linear: backward through a forward pass that recorded no graph");
                };
                let chunk = out_dim * PAR_ROWS;
                dz.par_chunks_mut(chunk)
                    .zip(zs.par_chunks(chunk))
                    .for_each(|(d, z)| {
                        for i in 0..d.len() {
                            d[i] *= gelu_erf_grad(z[i]);
                        }
                    });
            }
            Ok(dz)
        })??;
        let dx = if xs.track_op() {
            let dx = with_cpu_f32(weight, self.name(), |w| {
                // SAFETY: dx is (rows, in), written whole by the product; dz (rows, out) and W
                // (out, in) contiguous.
                unsafe {
                    written_f32(rows * in_dim, |dx| {
                        matmul(
                            rows,
                            in_dim,
                            out_dim,
                            dx,
                            in_dim,
                            false,
                            View::rows(&dz, 0, out_dim),
                            View::rows(w, 0, in_dim),
                            all_threads(),
                        )
                    })
                }
            })?;
            Some(Tensor::from_vec(dx, xs.shape(), xs.device())?)
        } else {
            None
        };
        let dw = if weight.track_op() {
            let dw = with_cpu_f32(xs, self.name(), |x| {
                // SAFETY: dW is (out, in), written whole by the product (zeros when rows is
                // 0); dzᵀ (out, rows) and x (rows, in).
                unsafe {
                    written_f32(out_dim * in_dim, |dw| {
                        matmul(
                            out_dim,
                            in_dim,
                            rows,
                            dw,
                            in_dim,
                            false,
                            View::transposed(&dz, 0, out_dim),
                            View::rows(x, 0, in_dim),
                            all_threads(),
                        )
                    })
                }
            })?;
            Some(Tensor::from_vec(dw, weight.shape(), weight.device())?)
        } else {
            None
        };
        let db = if bias.track_op() {
            Some(Tensor::from_vec(
                column_sums(&dz, out_dim),
                bias.shape(),
                bias.device(),
            )?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `activation(xs Wᵀ + b)`, times `dropout` (per-element multipliers) when given, for `xs`
/// `(..., in)`, `W` `(out, in)`, `b` `(out)`; f32 CPU tensors.
pub fn linear_fused(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    activation: DenseActivation,
    dropout: Option<Vec<f32>>,
) -> CResult<Tensor> {
    let keep = xs.track_op() || weight.track_op() || bias.track_op();
    let op = LinearOp {
        activation,
        dropout,
        keep,
        pre_activation: Mutex::new(None),
    };
    xs.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

// ---------------------------------------------------------------------------------------------
// Attention

/// The attention computation shared by [`attention_fused`] (separate Q, K, V tensors) and the
/// packed rotary attention of [`super::rotary_attention`] (one `(B, L, 3H)` projection): the
/// per-head products, the banded masked softmax and dropout, on projections that may lie at any
/// column offset and row stride of their buffers ([`Place`]).
pub(super) struct AttentionCore {
    pub(super) heads: usize,
    pub(super) scale: f32,
    /// `(B, L)`: 1 on keys that may be attended.
    pub(super) key_mask: Vec<f32>,
    /// When set, query `i` attends only to keys `j` with `|i − j| <= window` (ModernBERT's
    /// sliding-window layers).
    pub(super) window: Option<usize>,
    /// `(B, heads, L, L)` dropout multipliers on the probabilities.
    pub(super) dropout: Option<Vec<f32>>,
}

/// Geometry of one attention call.
#[derive(Clone, Copy)]
pub(super) struct Heads {
    batch: usize,
    seq_len: usize,
    hidden: usize,
    heads: usize,
    head_dim: usize,
}

impl Heads {
    /// Offset of head `bh` (batch-major) of the projection at `place`.
    fn at(&self, bh: usize, place: Place) -> usize {
        (bh / self.heads) * self.seq_len * place.rs + place.col + (bh % self.heads) * self.head_dim
    }

    fn square(&self) -> usize {
        self.seq_len * self.seq_len
    }

    /// Elements of one `(B, L, H)` projection.
    pub(super) fn elements(&self) -> usize {
        self.batch * self.seq_len * self.hidden
    }
}

/// Where a `(B, L, H)` projection lies in a row-major buffer: row `t` starts at `t · rs + col`.
#[derive(Clone, Copy)]
pub(super) struct Place {
    pub(super) col: usize,
    pub(super) rs: usize,
}

impl Place {
    /// A projection that is its whole buffer.
    pub(super) fn dense(hidden: usize) -> Self {
        Self { col: 0, rs: hidden }
    }
}

/// One projection's data and where it lies in it.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    pub(super) data: &'a [f32],
    pub(super) place: Place,
}

/// One gradient's output buffer and where the projection's gradient goes in it.
#[derive(Clone, Copy)]
pub(super) struct Target {
    pub(super) ptr: SharedMut,
    pub(super) place: Place,
}

impl AttentionCore {
    /// The geometry of `(batch, seq_len, hidden)` projections, checked against the heads, the
    /// key mask and the dropout mask.
    pub(super) fn geometry(&self, batch: usize, seq_len: usize, hidden: usize) -> CResult<Heads> {
        if self.heads == 0 || !hidden.is_multiple_of(self.heads) {
            bail!(
                "attention: hidden size {hidden} is not a multiple of {} heads",
                self.heads
            );
        }
        if self.key_mask.len() != batch * seq_len {
            bail!(
                "attention: key mask of {} elements for {batch} × {seq_len} tokens",
                self.key_mask.len()
            );
        }
        let geometry = Heads {
            batch,
            seq_len,
            hidden,
            heads: self.heads,
            head_dim: hidden / self.heads,
        };
        if let Some(mask) = &self.dropout {
            if mask.len() != batch * self.heads * geometry.square() {
                bail!(
                    "attention: dropout mask of {} elements for {batch} × {} × {seq_len}²",
                    mask.len(),
                    self.heads
                );
            }
        }
        Ok(geometry)
    }

    /// Scaled, masked softmax of the `(L, L)` scores in `probs`, in place: keys masked out by
    /// `key_mask` or lying outside the window get probability 0.
    fn softmax(&self, probs: &mut [f32], key_mask: &[f32]) {
        let keys = key_mask.len();
        for (i, row) in probs.chunks_mut(keys).enumerate() {
            let (first, last) = match self.window {
                Some(w) => (i.saturating_sub(w), (i + w + 1).min(keys)),
                None => (0, keys),
            };
            let attended = |j: usize| key_mask[j] > 0.0 && j >= first && j < last;
            let mut max = f32::NEG_INFINITY;
            for (j, score) in row.iter_mut().enumerate() {
                *score *= self.scale;
                if attended(j) && *score > max {
                    max = *score;
                }
            }
            let mut sum = 0f32;
            for (j, score) in row.iter_mut().enumerate() {
                let e = if attended(j) {
                    (*score - max).exp()
                } else {
                    0.0
                };
                *score = e;
                sum += e;
            }
            if sum > 0.0 {
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }

    /// Probabilities after dropout for head `bh`: `probs` itself, or `scratch` filled with them.
    fn dropped<'a>(&self, bh: usize, probs: &'a [f32], scratch: &'a mut [f32]) -> &'a [f32] {
        match &self.dropout {
            Some(mask) => {
                let mask = &mask[bh * probs.len()..(bh + 1) * probs.len()];
                for ((s, p), m) in scratch.iter_mut().zip(probs).zip(mask) {
                    *s = p * m;
                }
                scratch
            }
            None => probs,
        }
    }

    /// The context `(B, L, H)` and, with `keep`, the `(B, heads, L, L)` probabilities before
    /// dropout (for [`Self::backward`]). The operands must hold `(B, L, H)` projections at
    /// their places (checked by the callers' shapes).
    pub(super) fn forward(
        &self,
        g: &Heads,
        q: Operand,
        k: Operand,
        v: Operand,
        keep: bool,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let square = g.square();
        let dense = Place::dense(g.hidden);
        // Head bh: the scores into the L × L block at `probs` (written whole by the product),
        // softmax in place, the context into its own L × head_dim column block of `out`.
        let head = |bh: usize, probs: *mut f32, out: SharedMut, scratch: &mut [f32]| {
            let b = bh / g.heads;
            // SAFETY: probs is valid for L × L writes; the operands hold (B, L, H) projections
            // at their places; head bh writes only its own column block of out.
            let probs = unsafe {
                matmul(
                    g.seq_len,
                    g.seq_len,
                    g.head_dim,
                    probs,
                    g.seq_len,
                    false,
                    View::rows(q.data, g.at(bh, q.place), q.place.rs),
                    View::transposed(k.data, g.at(bh, k.place), k.place.rs),
                    Parallelism::None,
                );
                std::slice::from_raw_parts_mut(probs, square)
            };
            self.softmax(probs, &self.key_mask[b * g.seq_len..(b + 1) * g.seq_len]);
            let dropped = self.dropped(bh, probs, scratch);
            unsafe {
                matmul(
                    g.seq_len,
                    g.head_dim,
                    g.seq_len,
                    out.at(g.at(bh, dense)),
                    g.hidden,
                    false,
                    View::rows(dropped, 0, g.seq_len),
                    View::rows(v.data, g.at(bh, v.place), v.place.rs),
                    Parallelism::None,
                );
            }
        };
        let scratch_len = if self.dropout.is_some() { square } else { 0 };
        let bhs = g.batch * g.heads;
        let mut kept = None;
        // SAFETY: the heads' column blocks cover every row and column of out (heads × head_dim
        // = H), and with `keep` their L × L blocks cover probs.
        let out = unsafe {
            written_f32(g.elements(), |out| {
                let out = SharedMut(out);
                if keep {
                    kept = Some(written_f32(bhs * square, |probs| {
                        let probs = SharedMut(probs);
                        (0..bhs).into_par_iter().for_each_init(
                            || vec![0f32; scratch_len],
                            |scratch, bh| head(bh, probs.at(bh * square), out, scratch),
                        );
                    }));
                } else {
                    (0..bhs).into_par_iter().for_each_init(
                        || (vec![0f32; square], vec![0f32; scratch_len]),
                        |(p, scratch), bh| head(bh, p.as_mut_ptr(), out, scratch),
                    );
                }
            })
        };
        (out, kept)
    }

    /// Gradients of the projections from the context's gradient `dctx` (`(B, L, H)`,
    /// contiguous) and the kept probabilities, written to the targets (overwritten, not added).
    ///
    /// # Safety
    /// Each target must be valid for writes of a `(B, L, H)` projection at its place, and the
    /// three targets' blocks must not overlap each other or anything read meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn backward(
        &self,
        g: &Heads,
        probs: &[f32],
        q: Operand,
        k: Operand,
        v: Operand,
        dctx: &[f32],
        dq: Target,
        dk: Target,
        dv: Target,
    ) {
        let square = g.square();
        let dense = Place::dense(g.hidden);
        let scratch_len = if self.dropout.is_some() { square } else { 0 };
        (0..g.batch * g.heads).into_par_iter().for_each_init(
            || (vec![0f32; square], vec![0f32; scratch_len]),
            |(dp, scratch), bh| {
                let p = &probs[bh * square..(bh + 1) * square];
                let dropped = self.dropped(bh, p, scratch);
                let ctx = g.at(bh, dense);
                // SAFETY: dp holds L × L; head bh writes only its own column block of each
                // target (the caller's contract); the views stay inside their buffers.
                unsafe {
                    // dP' = dctx · Vᵀ; dV = P'ᵀ · dctx (P' after dropout).
                    matmul(
                        g.seq_len,
                        g.seq_len,
                        g.head_dim,
                        dp.as_mut_ptr(),
                        g.seq_len,
                        false,
                        View::rows(dctx, ctx, g.hidden),
                        View::transposed(v.data, g.at(bh, v.place), v.place.rs),
                        Parallelism::None,
                    );
                    matmul(
                        g.seq_len,
                        g.head_dim,
                        g.seq_len,
                        dv.ptr.at(g.at(bh, dv.place)),
                        dv.place.rs,
                        false,
                        View::transposed(dropped, 0, g.seq_len),
                        View::rows(dctx, ctx, g.hidden),
                        Parallelism::None,
                    );
                }
                if let Some(mask) = &self.dropout {
                    let mask = &mask[bh * square..(bh + 1) * square];
                    dp.iter_mut().zip(mask).for_each(|(d, m)| *d *= m);
                }
                // dS = scale · P ⊙ (dP − Σ dP ⊙ P) per row.
                for (d_row, p_row) in dp.chunks_mut(g.seq_len).zip(p.chunks(g.seq_len)) {
                    let dot: f32 = d_row.iter().zip(p_row).map(|(d, p)| d * p).sum();
                    for (d, p) in d_row.iter_mut().zip(p_row) {
                        *d = self.scale * p * (*d - dot);
                    }
                }
                unsafe {
                    // dQ = dS · K; dK = dSᵀ · Q.
                    matmul(
                        g.seq_len,
                        g.head_dim,
                        g.seq_len,
                        dq.ptr.at(g.at(bh, dq.place)),
                        dq.place.rs,
                        false,
                        View::rows(dp, 0, g.seq_len),
                        View::rows(k.data, g.at(bh, k.place), k.place.rs),
                        Parallelism::None,
                    );
                    matmul(
                        g.seq_len,
                        g.head_dim,
                        g.seq_len,
                        dk.ptr.at(g.at(bh, dk.place)),
                        dk.place.rs,
                        false,
                        View::transposed(dp, 0, g.seq_len),
                        View::rows(q.data, g.at(bh, q.place), q.place.rs),
                        Parallelism::None,
                    );
                }
            },
        )
    }
}

/// The key mask of a `(B, L)` tensor as the kernels read it.
pub(super) fn key_mask_values(key_mask: &Tensor) -> CResult<Vec<f32>> {
    key_mask
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()
}

struct AttentionOp {
    core: AttentionCore,
    keep: bool,
    /// `(B, heads, L, L)` probabilities before dropout, for the backward pass.
    probs: Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "crossdistill-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (batch, seq_len, hidden) = l1.shape().dims3()?;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            bail!(
                "attention: query {:?}, key {:?} and value {:?} must have one shape",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let g = self.core.geometry(batch, seq_len, hidden)?;
        let dense = Place::dense(hidden);
        let operand = |s, l| -> CResult<Operand> {
            Ok(Operand {
                data: f32_slice(s, l, self.name())?,
                place: dense,
            })
        };
        let (out, probs) = self.core.forward(
            &g,
            operand(s1, l1)?,
            operand(s2, l2)?,
            operand(s3, l3)?,
            self.keep,
        );
        if probs.is_some() {
            *self.probs.lock().expect("no panic while holding it") = probs;
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, seq_len, hidden) = q.dims3()?;
        let g = self.core.geometry(batch, seq_len, hidden)?;
        let kept = self.probs.lock().expect("no panic while holding it");
        let Some(probs) = kept.as_ref() else {
            bail!("attention: backward through a forward pass that recorded no graph");
        };
        let n = g.elements();
        let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let dense = Place::dense(hidden);
        let target = |buf: &mut Vec<f32>| Target {
            ptr: SharedMut(buf.as_mut_ptr()),
            place: dense,
        };
        let (tq, tk, tv) = (target(&mut dq), target(&mut dk), target(&mut dv));
        with_cpu_f32(q, self.name(), |q| {
            with_cpu_f32(k, self.name(), |k| {
                with_cpu_f32(v, self.name(), |v| {
                    with_cpu_f32(grad, self.name(), |dctx| {
                        let operand = |data| Operand { data, place: dense };
                        // SAFETY: dq, dk, dv are three separate (B, L, H) buffers.
                        unsafe {
                            self.core.backward(
                                &g,
                                probs,
                                operand(q),
                                operand(k),
                                operand(v),
                                dctx,
                                tq,
                                tk,
                                tv,
                            )
                        }
                    })
                })
            })
        })????;
        let device = q.device();
        let shape = q.shape();
        Ok((
            Some(Tensor::from_vec(dq, shape, device)?),
            Some(Tensor::from_vec(dk, shape, device)?),
            Some(Tensor::from_vec(dv, shape, device)?),
        ))
    }
}

/// Multi-head attention context `(B, L, H)` from the projections `query`, `key`, `value`
/// (each `(B, L, H)`, heads of `H / heads` consecutive columns): per head,
/// `softmax(scale · Q Kᵀ)` over the keys with `key_mask[b, k] > 0` (`(B, L)` values), times
/// `dropout` (`(B, heads, L, L)` multipliers) when given, times `V`; with `window`, query `i`
/// sees only keys `j` with `|i − j| <= window`. f32 CPU tensors.
#[allow(clippy::too_many_arguments)]
pub fn attention_fused(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    key_mask: &Tensor,
    heads: usize,
    scale: f64,
    window: Option<usize>,
    dropout: Option<Vec<f32>>,
) -> CResult<Tensor> {
    let keep = query.track_op() || key.track_op() || value.track_op();
    let op = AttentionOp {
        core: AttentionCore {
            heads,
            scale: scale as f32,
            key_mask: key_mask_values(key_mask)?,
            window,
            dropout,
        },
        keep,
        probs: Mutex::new(None),
    };
    query
        .contiguous()?
        .apply_op3(&key.contiguous()?, &value.contiguous()?, op)
}

// ---------------------------------------------------------------------------------------------
// Dropout

struct DropoutOp {
    mask: Vec<f32>,
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "crossdistill-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let xs = f32_slice(storage, layout, self.name())?;
        if xs.len() != self.mask.len() {
            bail!(
                "dropout: mask of {} elements for {:?}",
                self.mask.len(),
                layout.shape()
            );
        }
        let ys: Vec<f32> = xs.par_iter().zip(&self.mask).map(|(x, m)| x * m).collect();
        Ok((CpuStorage::F32(ys), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let dx = with_cpu_f32(grad, self.name(), |g| -> Vec<f32> {
            g.par_iter().zip(&self.mask).map(|(g, m)| g * m).collect()
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `xs ⊙ mask` (per-element multipliers, `xs.elem_count()` of them); f32 CPU tensors.
pub fn dropout_fused(xs: &Tensor, mask: Vec<f32>) -> CResult<Tensor> {
    xs.contiguous()?.apply_op1(DropoutOp { mask })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bias gradient must not depend on how rayon splits the work: in a pool where the
    /// calling thread takes part (the trainer's), it equals the in-order sum of the blocks' sums,
    /// bit for bit, every time.
    #[test]
    fn column_sums_add_the_blocks_in_order_whatever_the_thread_pool() {
        let (rows, width) = (PAR_ROWS * 37 + 5, 24);
        let xs: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3 + 1.0 / (1 + i % 13) as f32)
            .collect();
        let mut expected = vec![0f32; width];
        for block in xs.chunks(width * PAR_ROWS) {
            let mut sums = vec![0f32; width];
            for row in block.chunks(width) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            expected.iter_mut().zip(&sums).for_each(|(e, s)| *e += s);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for _ in 0..20 {
            let sums = pool.install(|| column_sums(&xs, width));
            assert!(sums
                .iter()
                .zip(&expected)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        assert_eq!(column_sums(&xs, width), expected);
    }
}
