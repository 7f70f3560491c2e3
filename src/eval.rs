//! The InfoGAN paper's unsupervised classification measure: how well the first
//! categorical code, read off by Q on real images, predicts their labels (Chen et al.,
//! 2016, section 7.1: about 5% error on MNIST). Code values are matched to labels by
//! the best one-to-one assignment (the Hungarian algorithm, from the pathfinding
//! crate); with more code values than labels, each value takes its majority label.

use ndarray::{Array4, s};
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::data::Dataset;
use crate::models::labels::CodeLabels;
use crate::models::{Discriminator, Generator, LatentSpec};

/// Images per batch when classifying.
pub const EVAL_BATCH: usize = 100;

/// The result of `categorical_accuracy`.
#[derive(Debug, Clone)]
pub struct CategoricalEval {
    /// Fraction of images whose mapped code value equals their label.
    pub accuracy: f64,
    /// For each code value: the share of its images that carry its most common label
    /// (None if Q never chose that value).
    pub purity: Vec<Option<f64>>,
    /// For each code value: the label it is mapped to (None if it got none).
    pub code_to_label: Vec<Option<usize>>,
    /// `counts[k][l]`: images of label l that Q put in code value k.
    pub counts: Vec<Vec<usize>>,
}

impl CategoricalEval {
    /// The map of code values to the names of their labels (`class_names`), as stored
    /// with a checkpoint of training step `step`.
    pub fn code_labels(&self, class_names: &[String], step: u64) -> CodeLabels {
        CodeLabels {
            labels: self.code_to_label.iter().map(|l| l.map(|l| class_names[l].clone())).collect(),
            accuracy: self.accuracy,
            test_images: self.counts.iter().flatten().sum(),
            step,
        }
    }
}

/// Q's most likely value of the first categorical code for every image of `data`.
///
/// With `batch_stats`, batch norm uses the statistics of each batch of real images, as
/// the discriminator saw real batches in training (its running statistics mix real
/// and generated batches); otherwise the running statistics. Whatever these passes
/// update is put back after, so evaluating changes no training state.
pub fn predict_codes(d: &mut Discriminator, spec: &LatentSpec, data: &Dataset, batch_stats: bool) -> Vec<usize> {
    let k = spec.categorical.first().copied().expect("predict_codes needs a categorical code");
    let saved = d.running_stats();
    d.set_requires_grad(false);
    d.set_training(batch_stats);
    let mut codes = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        // Batch norm needs two or more images: a last batch of one is classified
        // together with the image before it.
        let (batch, skip) =
            if chunk.len() == 1 && chunk[0] > 0 { (vec![chunk[0] - 1, chunk[0]], 1) } else { (chunk.to_vec(), 0) };
        codes.extend(q_choices(d, data.batch(&batch), k).into_iter().skip(skip));
    }
    d.set_requires_grad(true);
    d.set_training(true);
    d.set_running_stats(&saved);
    codes
}

/// Q's most likely value of a `k`-valued first categorical code for each image.
///
/// images: [N, C, H, W] -> [N]
fn q_choices(d: &mut Discriminator, images: Array4<f32>, k: usize) -> Vec<usize> {
    let h = d.features(images);
    let q = d.q_outputs(h);
    q.slice(s![.., ..k])
        .outer_iter()
        .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect()
}

/// Generated images per code in `code_stability`.
pub const STABILITY_IMAGES: usize = 1000;
/// The seed of `code_stability`'s latent points.
pub const STABILITY_SEED: u64 = 0x5354_4142;
/// Points of each sweep: -2 to 2 in steps of 0.25, so that the middle nine run from
/// -1 to 1.
const SWEEP_POINTS: usize = 17;

/// Whether a continuous code changes only the style: the share of generated images
/// whose first categorical value, as Q reads it, stays the same all along a sweep of
/// the code with everything else fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeStability {
    /// The swept continuous code (0-based).
    pub code: usize,
    /// The share over the prior's range, -1 to 1.
    pub within_1: f64,
    /// The share over the range of the paper's figures, -2 to 2.
    pub within_2: f64,
}

/// `CodeStability` of every continuous code, from `images` latent points drawn from
/// the prior with `seed`. Each point's code is swept over -2..2 in steps of 0.25;
/// Q classifies each generated image, with batch norm on the statistics of each
/// batch of generated images (as D saw generated batches in training; its running
/// statistics are put back after). (Issue #13: "style, not identity".)
pub fn code_stability(
    g: &mut Generator,
    d: &mut Discriminator,
    spec: &LatentSpec,
    images: usize,
    seed: u64,
) -> Vec<CodeStability> {
    let Some(&k) = spec.categorical.first().filter(|_| images > 0) else { return Vec::new() };
    let base = spec.sample(images, &mut Xoshiro256PlusPlus::seed_from_u64(seed)).z;
    let saved = d.running_stats();
    d.set_requires_grad(false);
    d.set_training(true);
    let mut result = Vec::with_capacity(spec.continuous);
    for code in 0..spec.continuous {
        let column = spec.cont_offset() + code;
        // choices[p][i]: Q's value for latent i at sweep point p.
        let choices: Vec<Vec<usize>> = (0..SWEEP_POINTS)
            .map(|p| {
                let v = -2.0 + 4.0 * p as f32 / (SWEEP_POINTS - 1) as f32;
                let mut z = base.clone();
                z.column_mut(column).fill(v);
                let mut out = Vec::with_capacity(images);
                // At least two images per batch, for batch norm.
                let mut start = 0;
                while start < images {
                    let end = if images - start <= EVAL_BATCH + 1 { images } else { start + EVAL_BATCH };
                    let x = g.generate(&z.slice(s![start..end, ..]).to_owned());
                    out.extend(q_choices(d, x, k));
                    start = end;
                }
                out
            })
            .collect();
        let share = |points: std::ops::Range<usize>| {
            let kept =
                (0..images).filter(|&i| points.clone().all(|p| choices[p][i] == choices[points.start][i])).count();
            kept as f64 / images.max(1) as f64
        };
        let middle = SWEEP_POINTS / 2;
        result.push(CodeStability { code, within_1: share(middle - 4..middle + 5), within_2: share(0..SWEEP_POINTS) });
    }
    d.set_requires_grad(true);
    d.set_training(true);
    d.set_running_stats(&saved);
    result
}

/// Scores predicted code values against labels.
pub fn score(codes: &[usize], labels: &[u8], code_values: usize, classes: usize) -> CategoricalEval {
    let mut counts = vec![vec![0usize; classes]; code_values];
    for (&c, &l) in codes.iter().zip(labels) {
        counts[c][l as usize] += 1;
    }
    let code_to_label: Vec<Option<usize>> = if code_values <= classes {
        best_assignment(&counts).into_iter().map(Some).collect()
    } else {
        counts
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .max_by_key(|&(l, &n)| (n, std::cmp::Reverse(l)))
                    .filter(|(_, n)| **n > 0)
                    .map(|(l, _)| l)
            })
            .collect()
    };
    let correct: usize = code_to_label.iter().zip(&counts).map(|(m, row)| m.map_or(0, |l| row[l])).sum();
    let purity = counts
        .iter()
        .map(|row| {
            let total: usize = row.iter().sum();
            (total > 0).then(|| *row.iter().max().unwrap_or(&0) as f64 / total as f64)
        })
        .collect();
    CategoricalEval { accuracy: correct as f64 / codes.len().max(1) as f64, purity, code_to_label, counts }
}

/// Classifies `data` with the discriminator's Q head (batch-norm statistics as in
/// `predict_codes`) and scores it.
pub fn categorical_accuracy(
    d: &mut Discriminator,
    spec: &LatentSpec,
    data: &Dataset,
    batch_stats: bool,
) -> CategoricalEval {
    let codes = predict_codes(d, spec, data, batch_stats);
    score(&codes, &data.labels, spec.categorical[0], data.class_names.len())
}

/// The assignment of code values (rows) to distinct labels (columns) that
/// maximises the number of images it gets right (`rows <= cols`): the Hungarian
/// algorithm (Kuhn-Munkres), from the pathfinding crate. Returns the column of each
/// row.
pub fn best_assignment(counts: &[Vec<usize>]) -> Vec<usize> {
    let (n, m) = (counts.len(), counts.first().map_or(0, Vec::len));
    assert!(n <= m, "best_assignment: {n} rows but only {m} columns");
    let flat: Vec<i64> = counts.iter().flatten().map(|&c| c as i64).collect();
    let weights = Matrix::from_vec(n, m, flat).expect("rows of equal length");
    kuhn_munkres(&weights).1
}

/// The per-code information lower bounds `H(c) - loss` from per-code losses.
pub fn lower_bounds(spec: &LatentSpec, code_losses: &[f64]) -> Vec<f64> {
    spec.code_entropies().iter().zip(code_losses).map(|(h, l)| h - l).collect()
}

/// Mean of rows of per-code values (for averaging step statistics).
pub fn mean_rows(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.len().max(1) as f64;
    let width = rows.first().map_or(0, Vec::len);
    (0..width).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every permutation of a small matrix, to check the Hungarian result.
    fn brute_force(w: &[Vec<usize>]) -> usize {
        fn go(w: &[Vec<usize>], row: usize, used: &mut Vec<bool>) -> usize {
            if row == w.len() {
                return 0;
            }
            let mut best = 0;
            for j in 0..w[0].len() {
                if !used[j] {
                    used[j] = true;
                    best = best.max(w[row][j] + go(w, row + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(w, 0, &mut vec![false; w[0].len()])
    }

    #[test]
    fn the_assignment_is_the_best_one() {
        let mut seed = 1u64;
        for (n, m) in [(1, 1), (3, 3), (4, 6), (6, 6), (7, 7)] {
            for _ in 0..20 {
                let w: Vec<Vec<usize>> = (0..n)
                    .map(|_| {
                        (0..m)
                            .map(|_| {
                                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                                (seed >> 40) as usize % 100
                            })
                            .collect()
                    })
                    .collect();
                let a = best_assignment(&w);
                let mut cols = a.clone();
                cols.sort();
                cols.dedup();
                assert_eq!(cols.len(), n, "columns used twice: {a:?}");
                let total: usize = a.iter().enumerate().map(|(i, &j)| w[i][j]).sum();
                assert_eq!(total, brute_force(&w), "{w:?} -> {a:?}");
            }
        }
    }

    #[test]
    fn score_maps_permuted_codes_back_to_labels() {
        // Code value k holds label (k + 3) % 10, with one mistake.
        let labels: Vec<u8> = (0..100).map(|i| (i % 10) as u8).collect();
        let mut codes: Vec<usize> = labels.iter().map(|&l| (l as usize + 7) % 10).collect();
        codes[0] = 5;
        let e = score(&codes, &labels, 10, 10);
        assert_eq!(e.accuracy, 0.99);
        assert_eq!(e.code_to_label[7], Some(0));
        // More code values than labels: each takes its majority label.
        let codes: Vec<usize> = labels.iter().enumerate().map(|(i, &l)| l as usize + 10 * (i % 2)).collect();
        let e = score(&codes, &labels, 20, 10);
        assert_eq!(e.accuracy, 1.0);
        assert_eq!(e.code_to_label[13], Some(3));
        assert_eq!(e.purity[13], Some(1.0));
    }
}
