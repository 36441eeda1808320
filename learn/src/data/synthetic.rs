//! Synthetic classification tasks for scale runs: any size, no files, a pure function of the
//! seed (stream [`super::stream::SYNTHETIC`]).

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, InputShape, Split, stream};

fn d_classes() -> usize {
    10
}
fn d_dim() -> usize {
    32
}
fn d_train() -> usize {
    10_000
}
fn d_test() -> usize {
    2_000
}
fn d_separation() -> f32 {
    3.0
}
fn d_hidden() -> usize {
    64
}

/// Gaussian mixture: class `c` has mean `mu_c ~ N(0, separation^2 / dim)` per coordinate and
/// samples `mu_c + N(0, I)`; classes are drawn uniformly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Gaussian {
    /// Number of classes (default 10).
    #[serde(default = "d_classes")]
    pub classes: usize,
    /// Features per sample (default 32).
    #[serde(default = "d_dim")]
    pub dim: usize,
    /// Training samples (default 10,000).
    #[serde(default = "d_train")]
    pub train: usize,
    /// Test samples (default 2,000).
    #[serde(default = "d_test")]
    pub test: usize,
    /// Typical distance between class means in units of the noise's standard deviation
    /// (default 3.0); smaller is harder.
    #[serde(default = "d_separation")]
    pub separation: f32,
}

/// Teacher-student: inputs `x ~ N(0, I)`, labels `argmax(relu(x W1) W2)` for a random teacher
/// with `W1 ~ N(0, 1/dim)` (`dim x hidden`) and `W2 ~ N(0, 1/hidden)` (`hidden x classes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Teacher {
    /// Features per sample (default 32).
    #[serde(default = "d_dim")]
    pub dim: usize,
    /// Teacher hidden width (default 64).
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    /// Number of classes (default 10).
    #[serde(default = "d_classes")]
    pub classes: usize,
    /// Training samples (default 10,000).
    #[serde(default = "d_train")]
    pub train: usize,
    /// Test samples (default 2,000).
    #[serde(default = "d_test")]
    pub test: usize,
}

fn positive(field: &'static str, v: usize, min: usize) -> Result<(), DataError> {
    if v >= min {
        Ok(())
    } else {
        Err(DataError::Invalid {
            field,
            reason: format!("must be at least {min}, got {v}"),
        })
    }
}

fn normal(rng: &mut impl Rng) -> f32 {
    rng.sample(StandardNormal)
}

impl Gaussian {
    /// Draws the training and test sets.
    pub fn generate(&self, seed: u64) -> Result<Split, DataError> {
        positive("classes", self.classes, 2)?;
        positive("dim", self.dim, 1)?;
        positive("train", self.train, 1)?;
        positive("test", self.test, 1)?;
        if !(self.separation.is_finite() && self.separation >= 0.0) {
            return Err(DataError::Invalid {
                field: "separation",
                reason: format!("must be finite and non-negative, got {}", self.separation),
            });
        }
        let mut rng = stream::rng(seed, stream::SYNTHETIC, 0);
        let scale = self.separation / (self.dim as f32).sqrt();
        let means: Vec<f32> = (0..self.classes * self.dim)
            .map(|_| normal(&mut rng) * scale)
            .collect();
        let mut draw = |n: usize| {
            let mut features = Vec::with_capacity(n * self.dim);
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                let c = rng.random_range(0..self.classes);
                let mean = &means[c * self.dim..(c + 1) * self.dim];
                features.extend(mean.iter().map(|m| m + normal(&mut rng)));
                labels.push(c as u32);
            }
            Dataset::new(
                features,
                labels,
                InputShape::tabular(self.dim),
                self.classes,
            )
        };
        let train = draw(self.train);
        let test = draw(self.test);
        Ok(Split { train, test })
    }
}

impl Teacher {
    /// Draws the teacher, then the training and test sets.
    pub fn generate(&self, seed: u64) -> Result<Split, DataError> {
        positive("classes", self.classes, 2)?;
        positive("dim", self.dim, 1)?;
        positive("hidden", self.hidden, 1)?;
        positive("train", self.train, 1)?;
        positive("test", self.test, 1)?;
        let mut rng = stream::rng(seed, stream::SYNTHETIC, 1);
        let s1 = 1.0 / (self.dim as f32).sqrt();
        let s2 = 1.0 / (self.hidden as f32).sqrt();
        let w1: Vec<f32> = (0..self.dim * self.hidden)
            .map(|_| normal(&mut rng) * s1)
            .collect();
        let w2: Vec<f32> = (0..self.hidden * self.classes)
            .map(|_| normal(&mut rng) * s2)
            .collect();
        let mut draw = |n: usize| {
            let mut features = Vec::with_capacity(n * self.dim);
            let mut labels = Vec::with_capacity(n);
            let mut h = vec![0f32; self.hidden];
            let mut out = vec![0f32; self.classes];
            for _ in 0..n {
                let x: Vec<f32> = (0..self.dim).map(|_| normal(&mut rng)).collect();
                h.iter_mut().for_each(|v| *v = 0.0);
                for (i, xi) in x.iter().enumerate() {
                    for (j, hj) in h.iter_mut().enumerate() {
                        *hj += xi * w1[i * self.hidden + j];
                    }
                }
                out.iter_mut().for_each(|v| *v = 0.0);
                for (j, hj) in h.iter().enumerate() {
                    let a = hj.max(0.0);
                    for (k, ok) in out.iter_mut().enumerate() {
                        *ok += a * w2[j * self.classes + k];
                    }
                }
                let label = out
                    .iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (k, &v)| {
                        if v > best.1 { (k, v) } else { best }
                    })
                    .0;
                features.extend_from_slice(&x);
                labels.push(label as u32);
            }
            Dataset::new(
                features,
                labels,
                InputShape::tabular(self.dim),
                self.classes,
            )
        };
        let train = draw(self.train);
        let test = draw(self.test);
        Ok(Split { train, test })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_sets_are_deterministic_and_use_every_class() {
        let g: Gaussian = toml::from_str("classes = 4\ndim = 8\ntrain = 400\ntest = 50").unwrap();
        let a = g.generate(9).unwrap();
        let b = g.generate(9).unwrap();
        assert_eq!(a.train.row(17), b.train.row(17));
        assert_eq!(a.test.labels(), b.test.labels());
        let all: Vec<u32> = (0..400).collect();
        assert!(a.train.histogram(&all).iter().all(|&n| n > 50));

        let t: Teacher = toml::from_str("dim = 8\nclasses = 3\ntrain = 600\ntest = 10").unwrap();
        let s = t.generate(2).unwrap();
        let all: Vec<u32> = (0..600).collect();
        assert!(s.train.histogram(&all).iter().all(|&n| n > 0));
        assert!(Gaussian { classes: 1, ..g }.generate(0).is_err());
    }
}
