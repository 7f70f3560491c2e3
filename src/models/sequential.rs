//! A chain of layers run one after another, like PyTorch's `nn.Sequential`, over
//! tensors of any rank (features `[N, F]` and images `[N, C, H, W]` in one chain).
//! Each layer has a name, and its tensors are named `<layer>.<tensor>` in
//! checkpoints, as PyTorch names the members of a module.

use ndarray::{ArrayD, ArrayViewD, Ix2, Ix4, IxDyn};

use crate::layers::{BatchNorm, Buffer, Conv2d, ConvTranspose2d, LeakyRelu, Linear, Module, Param, Relu, Tanh};

/// One step of a chain.
#[derive(Clone)]
pub enum Layer {
    Linear(Linear),
    Conv2d(Conv2d),
    ConvTranspose2d(ConvTranspose2d),
    BatchNorm(BatchNorm),
    Relu(Relu),
    LeakyRelu(LeakyRelu),
    Tanh(Tanh),
    /// Reshapes each sample to `shape` (for example `[F]` -> `[C, H, W]`). Cache: the
    /// per-sample shape it was given, to undo the reshape in backward.
    Reshape {
        shape: Vec<usize>,
        from: Vec<usize>,
    },
}

impl Layer {
    /// A reshape of each sample to `shape`.
    pub fn reshape(shape: &[usize]) -> Self {
        Layer::Reshape { shape: shape.to_vec(), from: Vec::new() }
    }

    fn forward(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        match self {
            Layer::Linear(l) => l.forward(x.into_dimensionality::<Ix2>().expect("Linear takes [N, F]")).into_dyn(),
            Layer::Conv2d(l) => {
                l.forward(x.into_dimensionality::<Ix4>().expect("Conv2d takes [N, C, H, W]")).into_dyn()
            }
            Layer::ConvTranspose2d(l) => {
                l.forward(x.into_dimensionality::<Ix4>().expect("ConvTranspose2d takes [N, C, H, W]")).into_dyn()
            }
            Layer::BatchNorm(l) => l.forward(x),
            Layer::Relu(l) => l.forward(x),
            Layer::LeakyRelu(l) => l.forward(x),
            Layer::Tanh(l) => l.forward(x),
            Layer::Reshape { shape, from } => {
                *from = x.shape()[1..].to_vec();
                reshape_samples(x, shape)
            }
        }
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        match self {
            Layer::Linear(l) => l.backward(dy.into_dimensionality::<Ix2>().expect("Linear dy is [N, F]")).into_dyn(),
            Layer::Conv2d(l) => l.backward(dy.into_dimensionality::<Ix4>().expect("Conv2d dy is 4-D")).into_dyn(),
            Layer::ConvTranspose2d(l) => {
                l.backward(dy.into_dimensionality::<Ix4>().expect("ConvTranspose2d dy is 4-D")).into_dyn()
            }
            Layer::BatchNorm(l) => l.backward(dy),
            Layer::Relu(l) => l.backward(dy),
            Layer::LeakyRelu(l) => l.backward(dy),
            Layer::Tanh(l) => l.backward(dy),
            Layer::Reshape { from, .. } => reshape_samples(dy, from),
        }
    }

    /// The layer's parameters and buffers, read-only, under their PyTorch names.
    fn tensors(&self) -> Vec<(&'static str, ArrayViewD<'_, f32>)> {
        match self {
            Layer::Linear(l) => vec![("weight", l.weight.view().into_dyn()), ("bias", l.bias.view().into_dyn())],
            Layer::Conv2d(l) => vec![("weight", l.weight.view().into_dyn()), ("bias", l.bias.view().into_dyn())],
            Layer::ConvTranspose2d(l) => {
                vec![("weight", l.weight.view().into_dyn()), ("bias", l.bias.view().into_dyn())]
            }
            Layer::BatchNorm(l) => vec![
                ("weight", l.weight.view().into_dyn()),
                ("bias", l.bias.view().into_dyn()),
                ("running_mean", l.running_mean.view().into_dyn()),
                ("running_var", l.running_var.view().into_dyn()),
            ],
            _ => Vec::new(),
        }
    }

    fn module(&mut self) -> Option<&mut dyn Module> {
        match self {
            Layer::Linear(l) => Some(l),
            Layer::Conv2d(l) => Some(l),
            Layer::ConvTranspose2d(l) => Some(l),
            Layer::BatchNorm(l) => Some(l),
            _ => None,
        }
    }
}

/// `[N, ...]` -> `[N, shape...]`, without copying.
fn reshape_samples(x: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    let mut full = vec![x.shape()[0]];
    full.extend_from_slice(shape);
    let (from, to): (Vec<usize>, usize) = (x.shape().to_vec(), full.iter().product());
    assert_eq!(x.len(), to, "Reshape: cannot reshape {from:?} to {full:?}");
    x.into_shape_with_order(IxDyn(&full)).expect("contiguous")
}

/// A named parameter of a chain: `"<layer>.<tensor>"`.
pub struct NamedParam<'a> {
    pub name: String,
    pub param: Param<'a>,
}

/// A named buffer of a chain: `"<layer>.<tensor>"`.
pub struct NamedBuffer<'a> {
    pub name: String,
    pub buffer: Buffer<'a>,
}

#[derive(Clone, Default)]
pub struct Sequential {
    pub layers: Vec<(String, Layer)>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer under `name`.
    pub fn push(&mut self, name: impl Into<String>, layer: Layer) -> &mut Self {
        self.layers.push((name.into(), layer));
        self
    }

    /// Runs the layers in order.
    pub fn forward(&mut self, mut x: ArrayD<f32>) -> ArrayD<f32> {
        for (_, layer) in &mut self.layers {
            x = layer.forward(x);
        }
        x
    }

    /// Runs the layers' backward passes in reverse order; returns `dx`.
    pub fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        for (_, layer) in self.layers.iter_mut().rev() {
            dy = layer.backward(dy);
        }
        dy
    }

    /// Like `backward`, for a chain whose input is data: the first layer computes only
    /// its parameter gradients, not the unused gradient of the data.
    pub fn backward_params(&mut self, mut dy: ArrayD<f32>) {
        let Some(((_, first), rest)) = self.layers.split_first_mut() else { return };
        for (_, layer) in rest.iter_mut().rev() {
            dy = layer.backward(dy);
        }
        match first {
            Layer::Conv2d(l) => l.backward_params(dy.into_dimensionality::<Ix4>().expect("Conv2d dy is 4-D")),
            other => {
                other.backward(dy);
            }
        }
    }

    /// Every parameter with its gradient, in layer order, named `<layer>.<tensor>`.
    pub fn params(&mut self) -> Vec<NamedParam<'_>> {
        let mut out = Vec::new();
        for (name, layer) in &mut self.layers {
            if let Some(m) = layer.module() {
                for p in m.params() {
                    out.push(NamedParam { name: format!("{name}.{}", p.name), param: p });
                }
            }
        }
        out
    }

    /// Every buffer (batch norm's running statistics), named `<layer>.<tensor>`.
    pub fn buffers(&mut self) -> Vec<NamedBuffer<'_>> {
        let mut out = Vec::new();
        for (name, layer) in &mut self.layers {
            if let Some(m) = layer.module() {
                for b in m.buffers() {
                    out.push(NamedBuffer { name: format!("{name}.{}", b.name), buffer: b });
                }
            }
        }
        out
    }

    /// Every parameter and buffer, read-only, named `<layer>.<tensor>` (for writing
    /// checkpoints and exports without copying).
    pub fn tensors(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        self.layers
            .iter()
            .flat_map(|(name, layer)| layer.tensors().into_iter().map(move |(t, v)| (format!("{name}.{t}"), v)))
            .collect()
    }

    pub fn zero_grad(&mut self) {
        for (_, layer) in &mut self.layers {
            if let Some(m) = layer.module() {
                m.zero_grad();
            }
        }
    }

    /// Whether backward accumulates parameter gradients (false: gradients only pass
    /// through to the input, as through a frozen network).
    pub fn set_requires_grad(&mut self, on: bool) {
        for (_, layer) in &mut self.layers {
            match layer {
                Layer::Linear(l) => l.requires_grad = on,
                Layer::Conv2d(l) => l.requires_grad = on,
                Layer::ConvTranspose2d(l) => l.requires_grad = on,
                Layer::BatchNorm(l) => l.requires_grad = on,
                _ => {}
            }
        }
    }

    /// How many independent batches the input stacks along N: batch norm normalises
    /// each with its own statistics (see `BatchNorm::groups`).
    pub fn set_groups(&mut self, groups: usize) {
        for (_, layer) in &mut self.layers {
            if let Layer::BatchNorm(l) = layer {
                l.groups = groups;
            }
        }
    }

    /// Training mode (batch statistics) or evaluation mode (running statistics).
    pub fn set_training(&mut self, on: bool) {
        for (_, layer) in &mut self.layers {
            if let Layer::BatchNorm(l) = layer {
                l.training = on;
            }
        }
    }
}
