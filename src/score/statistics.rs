//! The statistics behind the image scores: Gaussians fitted to features and the
//! Frechet distance between two of them (with a symmetric eigendecomposition for
//! the matrix square root), the Inception-style score of class probabilities, and
//! the mean pairwise distance of feature rows. In f64: the sums run over thousands
//! of images.

use ndarray::{ArrayView2, Axis};

/// A Gaussian fitted to rows of features: their mean and covariance (with `N - 1`).
pub struct Gaussian {
    pub mean: Vec<f64>,
    /// cov: [F, F] row-major
    pub cov: Vec<f64>,
    pub dim: usize,
}

impl Gaussian {
    /// x: [N, F], N >= 2
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let (n, f) = x.dim();
        assert!(n >= 2, "Gaussian::fit needs two or more rows, got {n}");
        let mut mean = vec![0f64; f];
        for row in x.outer_iter() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0f64; f * f];
        let mut centred = vec![0f64; f];
        for row in x.outer_iter() {
            for ((c, &v), &m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = v as f64 - m;
            }
            for i in 0..f {
                let ci = centred[i];
                for (cov, &cj) in cov[i * f..(i + 1) * f].iter_mut().zip(&centred) {
                    *cov += ci * cj;
                }
            }
        }
        cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
        Gaussian { mean, cov, dim: f }
    }
}

/// `|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))`, where the last trace is
/// the sum of the square roots of the eigenvalues of the symmetric `S1^(1/2) S2 S1^(1/2)`
/// (which has the eigenvalues of `S1 S2`).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.dim, b.dim, "frechet_distance: feature widths differ");
    let f = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |m: &[f64]| (0..f).map(|i| m[i * f + i]).sum::<f64>();
    let root_a = sqrtm_psd(&a.cov, f);
    let inner = matmul(&matmul(&root_a, &b.cov, f), &root_a, f);
    let (eig, _) = symmetric_eigen(&inner, f);
    let cross: f64 = eig.iter().map(|&l| l.max(0.0).sqrt()).sum();
    (mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross).max(0.0)
}

/// `exp(mean over images of KL(p(y|x) || p(y)))`, `p(y)` the mean of the rows.
/// probs: [N, K], rows summing to 1
pub fn inception_score(probs: ArrayView2<f32>) -> f64 {
    let n = probs.nrows().max(1) as f64;
    let marginal: Vec<f64> = probs.axis_iter(Axis(1)).map(|c| c.iter().map(|&p| p as f64).sum::<f64>() / n).collect();
    let kl: f64 = probs
        .outer_iter()
        .map(|row| {
            row.iter()
                .zip(&marginal)
                .filter(|(p, _)| **p > 0.0)
                .map(|(&p, &q)| p as f64 * ((p as f64).ln() - q.max(1e-300).ln()))
                .sum::<f64>()
        })
        .sum();
    (kl / n).exp()
}

/// The mean Euclidean distance between two distinct rows. x: [N, F], N >= 2
pub fn mean_pairwise_distance(x: ArrayView2<f32>) -> f64 {
    let n = x.nrows();
    if n < 2 {
        return 0.0;
    }
    let mut total = 0f64;
    for i in 0..n {
        let a = x.row(i);
        for j in i + 1..n {
            let d2: f64 = a.iter().zip(x.row(j)).map(|(&p, &q)| ((p - q) as f64).powi(2)).sum();
            total += d2.sqrt();
        }
    }
    total / (n * (n - 1) / 2) as f64
}

/// `a b` for `[f, f]` row-major matrices.
fn matmul(a: &[f64], b: &[f64], f: usize) -> Vec<f64> {
    let mut c = vec![0f64; f * f];
    for i in 0..f {
        for k in 0..f {
            let aik = a[i * f + k];
            for (c, &bkj) in c[i * f..(i + 1) * f].iter_mut().zip(&b[k * f..(k + 1) * f]) {
                *c += aik * bkj;
            }
        }
    }
    c
}

/// The square root of a symmetric positive semi-definite matrix, `V diag(sqrt(l)) V^T`
/// from its eigen-decomposition (negative round-off eigenvalues taken as 0).
fn sqrtm_psd(m: &[f64], f: usize) -> Vec<f64> {
    let (eig, vecs) = symmetric_eigen(m, f);
    let mut out = vec![0f64; f * f];
    for (k, &l) in eig.iter().enumerate() {
        let r = l.max(0.0).sqrt();
        for i in 0..f {
            let vik = vecs[i * f + k] * r;
            for j in 0..f {
                out[i * f + j] += vik * vecs[j * f + k];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (the columns of the second result, `[f, f]`
/// row-major) of a symmetric matrix, by cyclic Jacobi rotations (Golub and Van Loan,
/// "Matrix Computations", section 8.5) until the off-diagonal part is negligible.
pub fn symmetric_eigen(m: &[f64], f: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(m.len(), f * f, "symmetric_eigen: a {f}x{f} matrix has {} entries", f * f);
    let mut a = m.to_vec();
    let mut v = vec![0f64; f * f];
    (0..f).for_each(|i| v[i * f + i] = 1.0);
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..f)
            .flat_map(|i| (0..f).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * f + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * norm.max(1e-300) {
            break;
        }
        for p in 0..f {
            for q in p + 1..f {
                let apq = a[p * f + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                // The rotation that zeroes a[p, q]: t = tan(theta), the smaller root.
                let theta = (a[q * f + q] - a[p * f + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..f {
                    let (akp, akq) = (a[k * f + p], a[k * f + q]);
                    a[k * f + p] = c * akp - s * akq;
                    a[k * f + q] = s * akp + c * akq;
                }
                for k in 0..f {
                    let (apk, aqk) = (a[p * f + k], a[q * f + k]);
                    a[p * f + k] = c * apk - s * aqk;
                    a[q * f + k] = s * apk + c * aqk;
                }
                for k in 0..f {
                    let (vkp, vkq) = (v[k * f + p], v[k * f + q]);
                    v[k * f + p] = c * vkp - s * vkq;
                    v[k * f + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..f).map(|i| a[i * f + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::Array2;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let f = 12;
        let x: Array2<f32> = random_array([40, f], 3);
        let g = Gaussian::fit(x.view());
        let (eig, v) = symmetric_eigen(&g.cov, f);
        for i in 0..f {
            for j in 0..f {
                let back: f64 = (0..f).map(|k| v[i * f + k] * eig[k] * v[j * f + k]).sum();
                assert!((back - g.cov[i * f + j]).abs() < 1e-10, "({i}, {j}): {back} vs {}", g.cov[i * f + j]);
            }
        }
        let root = sqrtm_psd(&g.cov, f);
        let square = matmul(&root, &root, f);
        assert!(square.iter().zip(&g.cov).all(|(a, b)| (a - b).abs() < 1e-10));
    }

    /// Between two Gaussians with diagonal covariances the distance is known in closed
    /// form: `|mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2`.
    #[test]
    fn frechet_distance_of_diagonal_gaussians() {
        let (f, s1, s2) = (3, [1.0, 4.0, 0.25], [4.0, 1.0, 0.25]);
        let diag = |s: [f64; 3]| {
            let mut c = vec![0f64; f * f];
            (0..f).for_each(|i| c[i * f + i] = s[i]);
            c
        };
        let a = Gaussian { mean: vec![0.0, 1.0, 2.0], cov: diag(s1), dim: f };
        let b = Gaussian { mean: vec![1.0, 1.0, 0.0], cov: diag(s2), dim: f };
        let expected = 1.0 + 4.0 + (0..f).map(|i| (s1[i].sqrt() - s2[i].sqrt()).powi(2)).sum::<f64>();
        assert!((frechet_distance(&a, &b) - expected).abs() < 1e-9);
        assert!(frechet_distance(&a, &a) < 1e-9);
    }

    #[test]
    fn inception_score_ranges_from_one_to_the_class_count() {
        let sure = Array2::from_shape_fn((10, 10), |(i, j)| if i == j { 1.0f32 } else { 0.0 });
        assert!((inception_score(sure.view()) - 10.0).abs() < 1e-9);
        let unsure = Array2::from_elem((10, 10), 0.1f32);
        assert!((inception_score(unsure.view()) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pairwise_distance_of_known_points() {
        let x = ndarray::arr2(&[[0.0f32, 0.0], [3.0, 4.0], [0.0, 4.0]]);
        assert!((mean_pairwise_distance(x.view()) - (5.0 + 4.0 + 3.0) / 3.0).abs() < 1e-9);
    }
}
