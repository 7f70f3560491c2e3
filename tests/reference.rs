//! Every layer, loss and the optimizer against cases computed with PyTorch.
//!
//! Runs each `.safetensors` case in `$REFERENCE_CASES` (default
//! `../shared/testdata/torch`). A case's metadata names its `op` and settings; its
//! tensors hold the inputs, the forward output `y` and, for the loss `sum(y * dy)`,
//! the gradients. A case with an op this test does not know fails the test.
//!
//! `cargo test --release --test reference`

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array4, ArrayD, Ix1, Ix2, Ix4};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use infogan::layers::{BatchNorm, Conv2d, ConvTranspose2d, Layer, LeakyRelu, Linear, Param, Relu, Sigmoid, Tanh};
use infogan::loss::{bce_with_logits, cross_entropy, gaussian_nll};
use infogan::models::Sequential;
use infogan::optim::Adam;
use infogan::tensorfile::TensorFile;
use infogan::testutil::assert_close;

/// float32 against PyTorch's float64: about 1e-4 relative, 1e-5 absolute near zero.
const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;

struct Case {
    path: PathBuf,
    file: TensorFile,
}

impl Case {
    fn t(&self, name: &str) -> ArrayD<f32> {
        self.file.get(name, &self.path).unwrap().clone()
    }
    fn t1(&self, name: &str) -> Array1<f32> {
        self.t(name).into_dimensionality::<Ix1>().unwrap()
    }
    fn t2(&self, name: &str) -> Array2<f32> {
        self.t(name).into_dimensionality::<Ix2>().unwrap()
    }
    fn t4(&self, name: &str) -> Array4<f32> {
        self.t(name).into_dimensionality::<Ix4>().unwrap()
    }
    fn meta<T: std::str::FromStr>(&self, key: &str) -> T {
        let v = self.file.meta(key, &self.path).unwrap();
        v.parse().unwrap_or_else(|_| panic!("{}: metadata {key} = {v:?} does not parse", self.path.display()))
    }
    /// Compares `actual` with the stored tensor `name`; returns 1 (one check done).
    fn check<D: ndarray::Dimension>(&self, name: &str, actual: &ndarray::Array<f32, D>) -> usize {
        let expected = self.t(name);
        assert_close(&actual.view().into_dyn(), &expected, RTOL, ATOL, &format!("{}: {name}", self.path.display()));
        1
    }
    /// The scalar `loss`, stored with shape [1].
    fn check_loss(&self, loss: f32) -> usize {
        self.check("loss", &Array1::from_elem(1, loss))
    }
}

fn cases_dir() -> PathBuf {
    match std::env::var_os("REFERENCE_CASES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/torch"),
    }
}

fn rng() -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(0)
}

/// Runs a layer case through a one-layer chain: the case's tensors named after the
/// layer's parameters and buffers are loaded into it, then `y` and `dx` are compared,
/// and every parameter gradient `d<name>` and buffer `<name>_after` there is.
fn run_layer(case: &Case, layer: impl Layer + 'static) -> usize {
    let mut net = Sequential::new();
    net.push("layer", layer);
    for mut p in net.params() {
        p.param.value.assign(&case.t(p.param.name));
    }
    for mut b in net.buffers() {
        b.buffer.value.assign(&case.t(b.buffer.name));
    }
    let y = net.forward(case.t("x"));
    let dx = net.backward(case.t("dy"));
    let mut checks = case.check("y", &y) + case.check("dx", &dx);
    for p in net.params() {
        checks += case.check(&format!("d{}", p.param.name), &p.param.grad.to_owned());
    }
    for b in net.buffers() {
        checks += case.check(&format!("{}_after", b.buffer.name), &b.buffer.value.to_owned());
    }
    checks
}

/// Runs one case; returns the number of tensors compared.
fn run(case: &Case) -> usize {
    let op: String = case.meta("op");
    match op.as_str() {
        "linear" => {
            let w = case.t("weight");
            run_layer(case, Linear::new(w.shape()[1], w.shape()[0], &mut rng()))
        }
        "conv2d" => {
            let w = case.t4("weight");
            let (c_out, c_in, k, _) = w.dim();
            run_layer(case, Conv2d::new(c_in, c_out, k, case.meta("stride"), case.meta("padding"), &mut rng()))
        }
        "conv_transpose2d" => {
            let w = case.t4("weight");
            let (c_in, c_out, k, _) = w.dim();
            let layer = ConvTranspose2d::new(c_in, c_out, k, case.meta("stride"), case.meta("padding"), &mut rng());
            run_layer(case, layer)
        }
        "batchnorm" => {
            let mut layer = BatchNorm::new(case.t1("weight").len());
            layer.momentum = case.meta("momentum");
            layer.eps = case.meta("eps");
            layer.training = case.meta::<u8>("training") == 1;
            run_layer(case, layer)
        }
        "relu" => run_layer(case, Relu::new()),
        "leaky_relu" => run_layer(case, LeakyRelu::new(case.meta("negative_slope"))),
        "tanh" => run_layer(case, Tanh::new()),
        "sigmoid" => run_layer(case, Sigmoid::new()),
        "bce_with_logits" => {
            let (loss, dlogits) = bce_with_logits(case.t("logits").view(), case.t("targets").view());
            case.check_loss(loss) + case.check("dlogits", &dlogits)
        }
        "cross_entropy" => {
            let targets: Vec<usize> = case.t1("targets").iter().map(|&t| t as usize).collect();
            let (loss, dlogits) = cross_entropy(case.t2("logits").view(), &targets);
            case.check_loss(loss) + case.check("dlogits", &dlogits)
        }
        "gaussian_nll" => {
            let (loss, dmean, dlogstd) =
                gaussian_nll(case.t2("x").view(), case.t2("mean").view(), case.t2("logstd").view());
            case.check_loss(loss) + case.check("dmean", &dmean) + case.check("dlogstd", &dlogstd)
        }
        "adam" => {
            let mut adam = Adam::new(case.meta("lr"), case.meta("beta1"), case.meta("beta2"));
            adam.eps = case.meta("eps");
            let mut param = case.t("param");
            let steps: usize = case.meta("steps");
            let mut checks = 0;
            for k in 1..=steps {
                let grad = case.t(&format!("grad_{k}"));
                adam.update(vec![Param { name: "param", value: param.view_mut(), grad: grad.view() }]);
                checks += case.check(&format!("param_{k}"), &param);
            }
            checks
        }
        other => panic!("{}: unknown op {other:?}: add it to tests/reference.rs", case.path.display()),
    }
}

#[test]
fn every_reference_case_matches_pytorch() {
    let dir = cases_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the reference cases in {}: {e} (set REFERENCE_CASES)", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .safetensors cases in {}", dir.display());
    let mut tensors = 0;
    for path in &paths {
        let file = TensorFile::read(path).unwrap();
        tensors += run(&Case { path: path.clone(), file });
    }
    println!("reference: checked {} cases ({tensors} tensors) from {} against PyTorch", paths.len(), dir.display());
}
