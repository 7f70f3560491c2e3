//! How a layer describes itself to an ONNX writer (`output::onnx`): an operator, its
//! attributes and its constant inputs, in ONNX's terms (opset 13,
//! <https://onnx.ai/onnx/operators/>). Layers know their own operator; the writer
//! knows the file format and nothing of the layers' types.

use ndarray::{ArrayD, ArrayViewD};

/// One ONNX node of a layer.
pub struct OnnxOp {
    /// The operator, as in `"Gemm"` or `"ConvTranspose"`.
    pub op: &'static str,
    /// Inputs after the data input, as constants (initializers), each under the name
    /// the layer gives the tensor (`weight`, `bias`, ...).
    pub constants: Vec<(&'static str, OnnxConstant)>,
    pub attrs: Vec<(&'static str, OnnxAttr)>,
    /// For a layer with a weight and a bias (its first two constants) whose output
    /// units a batch norm after it can be folded into: the weight's axis of those
    /// units.
    pub fold_axis: Option<usize>,
}

pub enum OnnxConstant {
    Float(ArrayD<f32>),
    Int64(Vec<i64>),
}

pub enum OnnxAttr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// A layer's `weight` and `bias` as the constants of its node, in that order (the
/// order `fold_axis` expects).
pub fn weight_and_bias(weight: ArrayViewD<f32>, bias: ArrayViewD<f32>) -> Vec<(&'static str, OnnxConstant)> {
    vec![("weight", OnnxConstant::Float(weight.to_owned())), ("bias", OnnxConstant::Float(bias.to_owned()))]
}

/// The attributes of a square (transposed) convolution.
pub fn conv_attrs(kernel: usize, stride: usize, padding: usize) -> Vec<(&'static str, OnnxAttr)> {
    let (k, s, p) = (kernel as i64, stride as i64, padding as i64);
    vec![
        ("kernel_shape", OnnxAttr::Ints(vec![k, k])),
        ("strides", OnnxAttr::Ints(vec![s, s])),
        ("pads", OnnxAttr::Ints(vec![p, p, p, p])),
    ]
}
