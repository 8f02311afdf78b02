//! A streaming, seeded shuffle: a reservoir of `capacity` rows from which a random one is
//! emitted as each new row arrives. Memory is bounded by the buffer, the order is a pure
//! function of (seed, epoch, data), so resume can replay it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Shuffles an iterator through a bounded buffer.
pub struct ShuffleBuffer<I: Iterator> {
    inner: I,
    buffer: Vec<I::Item>,
    capacity: usize,
    rng: ChaCha8Rng,
}

impl<I: Iterator> ShuffleBuffer<I> {
    /// Shuffle `inner` with a buffer of `capacity` items, seeded by `seed` and `epoch`.
    pub fn new(inner: I, capacity: usize, seed: u64, epoch: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch + 1);
        Self {
            inner,
            buffer: Vec::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            rng,
        }
    }
}

impl<I: Iterator> Iterator for ShuffleBuffer<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        while self.buffer.len() < self.capacity {
            match self.inner.next() {
                Some(item) => self.buffer.push(item),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let index = self.rng.gen_range(0..self.buffer.len());
        Some(self.buffer.swap_remove(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a: Vec<u32> = ShuffleBuffer::new(0..100u32, 16, 7, 0).collect();
        let b: Vec<u32> = ShuffleBuffer::new(0..100u32, 16, 7, 0).collect();
        let c: Vec<u32> = ShuffleBuffer::new(0..100u32, 16, 7, 1).collect();
        assert_eq!(a, b);
        assert_ne!(a, c, "another epoch, another order");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }
}
