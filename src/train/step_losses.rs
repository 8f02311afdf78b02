//! The losses of one optimizer step, summed over its micro-batches as `(1,)` f64 tensors on the
//! student's device: the host path reads them at once, the device path with the step's other
//! scalars at the end of the log window (one read for the window instead of one per loss per
//! micro-batch).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Each loss's value summed over the step's micro-batches, and the weighted total.
#[derive(Debug, Clone)]
pub struct StepLosses {
    device: Device,
    /// `Σ weight · value` over losses and micro-batches.
    total: Option<Tensor>,
    /// Per loss (its metrics key), `Σ value` over micro-batches.
    parts: BTreeMap<String, Tensor>,
}

impl StepLosses {
    /// No losses yet; values are kept on `device` (the student's).
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            total: None,
            parts: BTreeMap::new(),
        }
    }

    /// Add a loss's value (a scalar tensor of any float type; detached, kept in f64).
    pub fn add(&mut self, key: &str, weight: f64, value: &Tensor) -> Result<()> {
        let value = value.detach().to_dtype(DType::F64)?.reshape(1)?;
        let weighted = (&value * weight)?;
        self.total = Some(match self.total.take() {
            Some(total) => (total + weighted)?,
            None => weighted,
        });
        let part = match self.parts.remove(key) {
            Some(sum) => (sum + value)?,
            None => value,
        };
        self.parts.insert(key.to_string(), part);
        Ok(())
    }

    /// Add a value known on the host (a loss that ran its own backward pass).
    pub fn add_host(&mut self, key: &str, weight: f64, value: f64) -> Result<()> {
        let value = Tensor::new(&[value], &self.device)?;
        self.add(key, weight, &value)
    }

    /// The step's loss, `scale · Σ weight · value` (scale: one over the micro-batches), as a
    /// `(1,)` f64 tensor; 0 when no loss ran (every micro-batch was skipped).
    pub fn total(&self, scale: f64) -> Result<Tensor> {
        match &self.total {
            Some(total) => Ok((total * scale)?),
            None => Ok(Tensor::zeros(1, DType::F64, &self.device)?),
        }
    }

    /// The per-loss sums read to the host, by key (the host path, where the tensors are host
    /// memory).
    pub fn read_parts(&self) -> Result<BTreeMap<String, f64>> {
        self.parts
            .iter()
            .map(|(key, value)| Ok((key.clone(), value.to_vec1::<f64>()?[0])))
            .collect()
    }

    /// The per-loss sums in key order, and their keys.
    pub fn parts(&self) -> (Vec<String>, Vec<Tensor>) {
        self.parts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_weighted_totals_and_per_loss_values_in_f64() {
        let dev = Device::Cpu;
        let mut losses = StepLosses::new(&dev);
        assert_eq!(losses.total(0.5).unwrap().to_vec1::<f64>().unwrap(), [0.0]);
        let bf16 = Tensor::new(1.5f32, &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        losses.add("loss/mse", 2.0, &bf16).unwrap();
        losses
            .add("loss/mse", 2.0, &Tensor::new(0.25f32, &dev).unwrap())
            .unwrap();
        losses.add_host("loss/cmnrl", 1.0, 0.125).unwrap();
        let total = losses.total(0.5).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(total, [0.5 * (2.0 * 1.75 + 0.125)]);
        let (keys, values) = losses.parts();
        assert_eq!(keys, ["loss/cmnrl", "loss/mse"]);
        let values: Vec<f64> = values
            .iter()
            .map(|v| v.to_vec1::<f64>().unwrap()[0])
            .collect();
        assert_eq!(values, [0.125, 1.75]);
        let read = losses.read_parts().unwrap();
        assert_eq!(
            read,
            BTreeMap::from([("loss/cmnrl".into(), 0.125), ("loss/mse".into(), 1.75)])
        );
    }
}
