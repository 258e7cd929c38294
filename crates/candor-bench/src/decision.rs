//! Cost of one consent decision (index lookup + mask) as the index grows.

use anyhow::Result;
use candor_core::index::ConsentIndex;
use candor_core::{PurposeSet, SubjectId};
use std::hint::black_box;
use std::time::Instant;

pub fn run() -> Result<()> {
    println!("consent decision: granted(subject) & covering(category)");
    println!(
        "{:>12} {:>14} {:>16}",
        "subjects", "ns/decision", "decisions/s"
    );
    for n in [10_000usize, 100_000, 1_000_000, 5_000_000] {
        let idx = ConsentIndex::new();
        let subjects: Vec<SubjectId> = (0..n).map(|_| SubjectId::random()).collect();
        for (i, s) in subjects.iter().enumerate() {
            idx.set(*s, PurposeSet::from_bits((i as u64 % 31) + 1));
        }
        let covering = PurposeSet::from_bits(0b00111);
        let rounds = 5_000_000usize;
        let start = Instant::now();
        let mut allowed = 0u64;
        for i in 0..rounds {
            let s = &subjects[(i.wrapping_mul(2_654_435_761)) % n];
            allowed += u64::from(!idx.granted(black_box(s)).intersect(covering).is_empty());
        }
        let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
        black_box(allowed);
        println!("{n:>12} {ns:>14.1} {:>16.0}", 1e9 / ns);
    }
    Ok(())
}
