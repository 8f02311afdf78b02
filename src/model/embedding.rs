//! Embedding lookup (`table[ids]`) whose backward pass adds only the rows it used.
//!
//! candle's `index_select` backward builds the table's gradient as `zeros_like(table)` plus an
//! `index_add`, which copies the zeros into a second table-sized buffer before adding: two
//! table-sized buffers written per step. For a ModernBERT vocabulary (50,368 × 256, 52 MB) that
//! was about a tenth of a training step. Here the gradient is one zero-initialised buffer into
//! which only the looked-up rows are added, in token order (the same order and so the same sums
//! as `index_add`). Other devices and dtypes use `index_select`.

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp2, DType, Layout, Shape, Storage, Tensor,
};

type CResult<T> = candle_core::Result<T>;

struct EmbeddingOp;

/// The ids of a contiguous u32 CPU storage.
fn ids_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> CResult<&'a [u32]> {
    let CpuStorage::U32(ids) = storage else {
        bail!("embedding: ids must be u32, found {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&ids[start..end]),
        None => Err(candle_core::Error::RequiresContiguous { op: "embedding" }),
    }
}

fn table_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> CResult<&'a [f32]> {
    let CpuStorage::F32(table) = storage else {
        bail!(
            "embedding: the table must be f32, found {:?}",
            storage.dtype()
        );
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&table[start..end]),
        None => Err(candle_core::Error::RequiresContiguous { op: "embedding" }),
    }
}

impl CustomOp2 for EmbeddingOp {
    fn name(&self) -> &'static str {
        "crossdistill-embedding"
    }

    fn cpu_fwd(
        &self,
        table_storage: &CpuStorage,
        table_layout: &Layout,
        ids_storage: &CpuStorage,
        ids_layout: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (rows, width) = table_layout.shape().dims2()?;
        let table = table_slice(table_storage, table_layout)?;
        let ids = ids_slice(ids_storage, ids_layout)?;
        let mut out = Vec::with_capacity(ids.len() * width);
        for &id in ids {
            let id = id as usize;
            if id >= rows {
                bail!("embedding: id {id} is outside the table of {rows} rows");
            }
            out.extend_from_slice(&table[id * width..(id + 1) * width]);
        }
        Ok((CpuStorage::F32(out), Shape::from((ids.len(), width))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (rows, width) = table.dims2()?;
        let mut dtable = vec![0f32; rows * width];
        let grad = grad.contiguous()?;
        let (grad_storage, grad_layout) = grad.storage_and_layout();
        let (ids_storage, ids_layout) = ids.storage_and_layout();
        match (&*grad_storage, &*ids_storage) {
            (Storage::Cpu(grad_cpu), Storage::Cpu(ids_cpu)) => {
                let grad = table_slice(grad_cpu, grad_layout)?;
                let ids = ids_slice(ids_cpu, ids_layout)?;
                for (&id, g) in ids.iter().zip(grad.chunks_exact(width)) {
                    let id = id as usize;
                    for (d, &g) in dtable[id * width..(id + 1) * width].iter_mut().zip(g) {
                        *d += g;
                    }
                }
            }
            _ => bail!("embedding: the fused kernel runs on CPU tensors only"),
        }
        drop(grad_storage);
        Ok((
            Some(Tensor::from_vec(dtable, (rows, width), table.device())?),
            None,
        ))
    }
}

/// `table[ids]`: rows of a `(rows, width)` table for ids of any shape, as `(ids.len(), width)`.
pub fn embedding(table: &Tensor, ids: &Tensor) -> CResult<Tensor> {
    let ids = ids.flatten_all()?;
    if table.device().is_cpu() && table.dtype() == DType::F32 && ids.dtype() == DType::U32 {
        return table
            .contiguous()?
            .apply_op2(&ids.contiguous()?, EmbeddingOp);
    }
    table.index_select(&ids, 0)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::model::gradient_check::check_grad;

    fn table() -> Vec<f32> {
        (0..5 * 3)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 7.0)
            .collect()
    }

    #[test]
    fn forward_and_gradient_equal_index_select() {
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[4u32, 1, 4], [0, 4, 2]], &dev).unwrap();
        let var = Var::from_vec(table(), (5, 3), &dev).unwrap();
        let weights = Tensor::arange(0f32, 18.0, &dev)
            .unwrap()
            .reshape((6, 3))
            .unwrap();
        let ours = embedding(var.as_tensor(), &ids).unwrap();
        let theirs = var
            .as_tensor()
            .index_select(&ids.flatten_all().unwrap(), 0)
            .unwrap();
        assert_eq!(
            ours.to_vec2::<f32>().unwrap(),
            theirs.to_vec2::<f32>().unwrap()
        );
        let grad_of = |out: &Tensor| {
            let store = out
                .mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            store
                .get(var.as_tensor())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let ours = grad_of(&ours);
        assert_eq!(ours, grad_of(&theirs));
        // Row 3 was never looked up; row 4 three times.
        assert_eq!(ours[3], vec![0.0; 3]);
        assert_eq!(
            ours[4],
            vec![0.0 + 12.0 + 6.0, 1.0 + 13.0 + 7.0, 2.0 + 14.0 + 8.0]
        );
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let ids = Tensor::new(&[3u32, 3, 0, 1], &Device::Cpu).unwrap();
        check_grad(&table(), &[5, 3], &|t| embedding(t, &ids), 1e-2);
    }

    #[test]
    fn an_id_outside_the_table_is_an_error() {
        let dev = Device::Cpu;
        let table = Tensor::new(table(), &dev).unwrap().reshape((5, 3)).unwrap();
        let ids = Tensor::new(&[5u32], &dev).unwrap();
        let error = embedding(&table, &ids).unwrap_err().to_string();
        assert!(
            error.contains("id 5 is outside the table of 5 rows"),
            "{error}"
        );
    }
}
