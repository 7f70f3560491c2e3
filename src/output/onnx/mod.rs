//! ONNX export of a trained generator: `latent: [batch, L]` in, `image: [batch, C, H,
//! W]` in [-1, 1] out, opset 13, with a symbolic batch dimension. Batch norm is in
//! inference form, its running statistics folded into the weights of the layer
//! before it: with `s = weight / sqrt(running_var + eps)`, `W' = s W` (per output
//! unit or channel) and `b' = s (b - running_mean) + bias`.
//! Metadata properties describe the latent layout, so that a runtime can build
//! latent vectors for chosen codes.

pub mod proto;

use std::path::Path;

use ndarray::{Array1, ArrayD, Axis};
use prost::Message;

use crate::error::{Error, Result};
use crate::layers::BatchNorm;
use crate::models::{Architecture, Generator, Layer};
use crate::tensorfile::write_atomically;
use proto::*;

/// The opset the graph is written for: every operator it uses exists in it, and
/// onnxruntime and TensorRT both accept it.
pub const OPSET: i64 = 13;
/// IR version 8 (ONNX 1.10), which opset 13 models may use.
pub const IR_VERSION: i64 = 8;

/// The generator as an ONNX model.
pub fn generator_model(g: &Generator, arch: &Architecture) -> Result<ModelProto> {
    let mut graph = GraphBuilder::default();
    let mut x = "latent".to_string();
    let layers = &g.net.layers;
    let mut i = 0;
    while i < layers.len() {
        let (name, layer) = (&layers[i].0, &layers[i].1);
        let bn = match layers.get(i + 1) {
            Some((_, Layer::BatchNorm(bn))) => Some(bn),
            _ => None,
        };
        x = match layer {
            Layer::Linear(l) => {
                let (w, b) = fold(l.weight.clone().into_dyn(), &l.bias, bn, Axis(0));
                let w = graph.initializer(&format!("{name}.weight"), &w);
                let b = graph.initializer(&format!("{name}.bias"), &b.into_dyn());
                graph.node("Gemm", name, &[&x, &w, &b], vec![attr_int("transB", 1)])
            }
            Layer::ConvTranspose2d(l) => {
                let (w, b) = fold(l.weight.clone().into_dyn(), &l.bias, bn, Axis(1));
                let w = graph.initializer(&format!("{name}.weight"), &w);
                let b = graph.initializer(&format!("{name}.bias"), &b.into_dyn());
                let (k, s, p) = (l.weight.dim().2 as i64, l.stride as i64, l.padding as i64);
                let attrs = vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[s, s]),
                    attr_ints("pads", &[p, p, p, p]),
                ];
                graph.node("ConvTranspose", name, &[&x, &w, &b], attrs)
            }
            Layer::Relu(_) => graph.node("Relu", name, &[&x], vec![]),
            Layer::Tanh(_) => graph.node("Tanh", name, &[&x], vec![]),
            Layer::LeakyRelu(l) => graph.node("LeakyRelu", name, &[&x], vec![attr_float("alpha", l.negative_slope)]),
            Layer::Reshape { shape, .. } => {
                let dims: Vec<i64> = std::iter::once(-1).chain(shape.iter().map(|&d| d as i64)).collect();
                let s = graph.int64_initializer(&format!("{name}.shape"), &dims);
                graph.node("Reshape", name, &[&x, &s], vec![])
            }
            Layer::BatchNorm(_) => {
                return Err(Error::Invalid(format!(
                    "cannot export layer {name}: a batch norm that does not follow a linear or transposed convolution"
                )));
            }
            Layer::Conv2d(_) => {
                return Err(Error::Invalid(format!(
                    "cannot export layer {name}: the generator has no Conv2d to export"
                )));
            }
        };
        i += if bn.is_some() { 2 } else { 1 };
    }
    let (c, h, w) = arch.dataset.image_shape();
    let latent = arch.latent.size();
    graph.rename_last(&x, "image");
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("infogan".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "InfoGAN generator for {}: latent [batch, {latent}] -> image [batch, {c}, {h}, {w}] in [-1, 1]",
            arch.dataset
        )),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: Some("generator".into()),
            initializer: graph.initializers,
            input: vec![value_info("latent", &[None, Some(latent as i64)])],
            output: vec![value_info("image", &[None, Some(c as i64), Some(h as i64), Some(w as i64)])],
        }),
        metadata_props: metadata(arch)
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) })
            .collect(),
    })
}

/// The latent layout and provenance, as metadata properties.
pub fn metadata(arch: &Architecture) -> Vec<(String, String)> {
    let l = &arch.latent;
    let join = |v: Vec<usize>| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    let (c, h, w) = arch.dataset.image_shape();
    vec![
        ("producer".into(), format!("infogan {}", env!("CARGO_PKG_VERSION"))),
        ("dataset".into(), arch.dataset.name().into()),
        ("latent_size".into(), l.size().to_string()),
        ("noise_size".into(), l.noise.to_string()),
        ("noise_offset".into(), "0".into()),
        ("noise_distribution".into(), "uniform(-1,1)".into()),
        ("categorical_sizes".into(), join(l.categorical.clone())),
        ("categorical_offsets".into(), join((0..l.categorical.len()).map(|k| l.cat_offset(k)).collect())),
        ("categorical_encoding".into(), "one-hot".into()),
        ("continuous_count".into(), l.continuous.to_string()),
        ("continuous_offset".into(), l.cont_offset().to_string()),
        ("continuous_distribution".into(), "uniform(-1,1)".into()),
        ("image_shape".into(), format!("{c},{h},{w}")),
        ("image_range".into(), "-1,1".into()),
    ]
}

/// Writes the ONNX file atomically.
pub fn save(model: &ModelProto, path: &Path) -> Result<()> {
    write_atomically(path, &model.encode_to_vec())
}

/// A layer's weight and bias with the batch norm after it folded in; `out_axis` is
/// the weight axis of the output units (0 for Linear's `[F_out, F_in]`, 1 for
/// ConvTranspose2d's `[C_in, C_out, KH, KW]`).
fn fold(
    mut weight: ArrayD<f32>,
    bias: &Array1<f32>,
    bn: Option<&BatchNorm>,
    out_axis: Axis,
) -> (ArrayD<f32>, Array1<f32>) {
    let Some(bn) = bn else { return (weight, bias.clone()) };
    let scale: Array1<f32> = bn
        .running_var
        .iter()
        .zip(&bn.weight)
        .map(|(&var, &g)| (g as f64 / (var as f64 + bn.eps as f64).sqrt()) as f32)
        .collect();
    for (o, mut slice) in weight.axis_iter_mut(out_axis).enumerate() {
        slice.mapv_inplace(|v| v * scale[o]);
    }
    let bias = Array1::from_shape_fn(bias.len(), |o| scale[o] * (bias[o] - bn.running_mean[o]) + bn.bias[o]);
    (weight, bias)
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    fn initializer(&mut self, name: &str, t: &ArrayD<f32>) -> String {
        self.initializers.push(TensorProto {
            dims: t.shape().iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            int64_data: Vec::new(),
            name: Some(name.into()),
            raw_data: Some(t.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name.into()
    }

    fn int64_initializer(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(INT64),
            int64_data: values.to_vec(),
            name: Some(name.into()),
            raw_data: None,
        });
        name.into()
    }

    /// Appends a node; its output is named after the node.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let output = format!("{name}.out");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: Some(name.into()),
            op_type: Some(op.into()),
            attribute,
        });
        output
    }

    /// Gives the graph's last value the output's name.
    fn rename_last(&mut self, from: &str, to: &str) {
        for node in &mut self.nodes {
            for o in &mut node.output {
                if o == from {
                    *o = to.into();
                }
            }
        }
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(i), r#type: Some(ATTR_INT), ..Default::default() }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), f: Some(f), r#type: Some(ATTR_FLOAT), ..Default::default() }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), ints: ints.to_vec(), r#type: Some(ATTR_INTS), ..Default::default() }
}

/// A float tensor's name, type and shape (`None`: the symbolic batch dimension).
fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => Dimension { dim_value: Some(*v), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("batch".into()) },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: Some(FLOAT), shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}
