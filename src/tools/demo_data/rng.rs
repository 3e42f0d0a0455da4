//! A small counter-based random generator (splitmix64): every entity draws from its own stream,
//! keyed by (seed, stream, index), so any row can be regenerated on its own and the data does not
//! depend on the order in which tables are written.

use uuid::Uuid;

/// What a stream of random numbers is for. Changing a value changes the data of that kind only.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stream {
    Plan = 1,
    Person,
    AuthId,
    AuthRow,
    Identity,
    Profile,
    Payment,
    PaymentRow,
    Transaction,
    Enrollment,
    Lesson,
    Tag,
    Lead,
    Ebook,
    Contact,
    XenditFiller,
    ContactFiller,
    Merge,
    Course,
    Test,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: Stream, index: u64) -> Self {
        let mut s = seed ^ (stream as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let a = splitmix64(&mut s);
        let mut t = a ^ index.wrapping_mul(0xA076_1D64_78BD_642F);
        let b = splitmix64(&mut t);
        Rng(b)
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn hex(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(len);
        out
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The id of one entity: a UUID drawn from its own stream.
pub fn uuid_of(seed: u64, stream: Stream, index: u64) -> Uuid {
    Rng::new(seed, stream, index).uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_numbers_different_key_different_numbers() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::new(7, Stream::Person, 3).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::new(7, Stream::Person, 3).next_u64(),
            Rng::new(7, Stream::Person, 4).next_u64()
        );
        assert_ne!(
            Rng::new(7, Stream::Person, 3).next_u64(),
            Rng::new(8, Stream::Person, 3).next_u64()
        );
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(1, Stream::Plan, 0);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
        }
    }
}
