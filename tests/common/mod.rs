//! Shared by the property tests.

use proptest::test_runner::{Config, RngSeed};

/// `cases` cases from the fixed `seed`, so that CI runs are repeatable; set
/// `PROPTEST_RNG_SEED` (and `PROPTEST_CASES`) to explore other cases.
pub fn proptest_config(cases: u32, seed: u64) -> Config {
    let defaults = Config::default();
    let rng_seed =
        if std::env::var_os("PROPTEST_RNG_SEED").is_some() { defaults.rng_seed } else { RngSeed::Fixed(seed) };
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { defaults.cases } else { cases };
    Config { cases, rng_seed, failure_persistence: None, ..defaults }
}
