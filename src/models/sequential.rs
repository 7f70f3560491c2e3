//! A chain of layers run one after another, like PyTorch's `nn.Sequential`, over
//! tensors of any rank (features `[N, F]` and images `[N, C, H, W]` in one chain).
//! Each layer has a name, and its tensors are named `<layer>.<tensor>` in
//! checkpoints, as PyTorch names the members of a module.

use ndarray::{ArrayD, ArrayViewD};

use crate::layers::{Buffer, Layer, Param};

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
    pub layers: Vec<(String, Box<dyn Layer>)>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer under `name`.
    pub fn push(&mut self, name: impl Into<String>, layer: impl Layer + 'static) -> &mut Self {
        self.layers.push((name.into(), Box::new(layer)));
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
        first.backward_params(dy);
    }

    /// Every parameter with its gradient, in layer order, named `<layer>.<tensor>`.
    pub fn params(&mut self) -> Vec<NamedParam<'_>> {
        let named = self.layers.iter_mut().flat_map(|(name, layer)| {
            let name: &str = name;
            layer.params().into_iter().map(move |p| NamedParam { name: format!("{name}.{}", p.name), param: p })
        });
        named.collect()
    }

    /// `f` on every parameter in the order of `params`, unnamed and uncollected.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_>)) {
        self.layers.iter_mut().for_each(|(_, layer)| layer.visit_params(f));
    }

    /// Every buffer (batch norm's running statistics), named `<layer>.<tensor>`.
    pub fn buffers(&mut self) -> Vec<NamedBuffer<'_>> {
        let named = self.layers.iter_mut().flat_map(|(name, layer)| {
            let name: &str = name;
            layer.buffers().into_iter().map(move |b| NamedBuffer { name: format!("{name}.{}", b.name), buffer: b })
        });
        named.collect()
    }

    /// Every parameter and buffer, read-only, named `<layer>.<tensor>` (for writing
    /// checkpoints and exports without copying).
    pub fn tensors(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        self.layers
            .iter()
            .flat_map(|(name, layer)| layer.tensors().into_iter().map(move |(t, v)| (format!("{name}.{t}"), v)))
            .collect()
    }

    /// The names of `params`, `<layer>.<tensor>`, in their order, read-only.
    pub fn param_names(&self) -> Vec<String> {
        let names = self.layers.iter().flat_map(|(name, layer)| {
            let name: &str = name;
            layer.param_names().into_iter().map(move |p| format!("{name}.{p}"))
        });
        names.collect()
    }

    pub fn zero_grad(&mut self) {
        self.layers.iter_mut().for_each(|(_, l)| l.zero_grad());
    }

    /// Whether backward accumulates parameter gradients (false: gradients only pass
    /// through to the input, as through a frozen network).
    pub fn set_requires_grad(&mut self, on: bool) {
        self.layers.iter_mut().for_each(|(_, l)| l.set_requires_grad(on));
    }

    /// How many independent batches the input stacks along N: batch norm normalises
    /// each with its own statistics (see `BatchNorm::groups`).
    pub fn set_groups(&mut self, groups: usize) {
        self.layers.iter_mut().for_each(|(_, l)| l.set_groups(groups));
    }

    /// How the batch is split into shards (see `collective`), for every layer.
    pub fn set_shards(&mut self, shards: &crate::collective::Shards) {
        self.layers.iter_mut().for_each(|(_, l)| l.set_shards(shards));
    }

    /// Training mode (batch statistics) or evaluation mode (running statistics).
    pub fn set_training(&mut self, on: bool) {
        self.layers.iter_mut().for_each(|(_, l)| l.set_training(on));
    }
}
