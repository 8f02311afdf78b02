//! [`BatchTensors`]: a padded batch of token ids as the device tensors an encoder reads.

use candle_core::{Device, Tensor};

use super::config::{Architecture, EncoderConfig};
use crate::error::Result;
use crate::tokenize::PaddedBatch;

/// A padded batch as device tensors.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    /// `(B, L)` u32 token ids.
    pub input_ids: Tensor,
    /// `(B, L)` u32 segment ids.
    pub type_ids: Tensor,
    /// `(B, L)` u32 position ids.
    pub position_ids: Tensor,
    /// `(B, L)` f32, 1 on real tokens.
    pub attention_mask: Tensor,
}

impl BatchTensors {
    /// Build the tensors for `batch` as `config`'s architecture expects them.
    pub fn new(batch: &PaddedBatch, config: &EncoderConfig, device: &Device) -> Result<Self> {
        let shape = (batch.batch_size, batch.seq_len);
        let pad = config.pad_token_id;
        let positions: Vec<u32> = match config.architecture {
            Architecture::Bert | Architecture::Electra | Architecture::ModernBert => (0..batch
                .batch_size)
                .flat_map(|_| 0..batch.seq_len as u32)
                .collect(),
            // transformers' create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad
            Architecture::XlmRoberta => batch
                .input_ids
                .chunks(batch.seq_len.max(1))
                .flat_map(|row| {
                    let mut count = 0u32;
                    row.iter()
                        .map(|&id| {
                            if id != pad {
                                count += 1;
                                count + pad
                            } else {
                                pad
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        };
        let type_ids: Vec<u32> = if config.type_vocab_size > 1 {
            batch.type_ids.clone()
        } else {
            vec![0; batch.type_ids.len()]
        };
        Ok(Self {
            input_ids: Tensor::from_vec(batch.input_ids.clone(), shape, device)?,
            type_ids: Tensor::from_vec(type_ids, shape, device)?,
            position_ids: Tensor::from_vec(positions, shape, device)?,
            attention_mask: Tensor::from_vec(batch.attention_mask.clone(), shape, device)?,
        })
    }
}
