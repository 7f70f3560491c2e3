//! ONNX export of a trained generator: `latent: [batch, L]` in, `image: [batch, C, H,
//! W]` in [-1, 1] out, opset 13, with a symbolic batch dimension. Each layer gives
//! its own operator (`Layer::onnx`). Batch norm is in inference form; after a linear
//! or (transposed) convolution its running statistics are folded into that layer's
//! weights: with `s = weight / sqrt(running_var + eps)`, `W' = s W` (per output
//! unit or channel) and `b' = s (b - running_mean) + bias`.
//! Metadata properties describe the latent layout, so that a runtime can build
//! latent vectors for chosen codes.

pub mod proto;

use std::path::Path;

use ndarray::{Array1, Axis};
use prost::Message;

use crate::error::{Error, Result};
use crate::layers::{OnnxAttr, OnnxConstant, OnnxOp};
use crate::models::labels::CodeLabels;
use crate::models::{Architecture, Generator};
use crate::tensorfile::write_atomically;
use proto::*;

/// The opset the graph is written for: every operator it uses exists in it, and
/// onnxruntime and TensorRT both accept it.
pub const OPSET: i64 = 13;
/// IR version 8 (ONNX 1.10), which opset 13 models may use.
pub const IR_VERSION: i64 = 8;

/// The generator as an ONNX model: each layer's own operator (`Layer::onnx`), with
/// a batch norm that follows a layer with `fold_axis` folded into that layer.
pub fn generator_model(g: &Generator, arch: &Architecture, labels: Option<&CodeLabels>) -> Result<ModelProto> {
    let mut graph = GraphBuilder::default();
    let mut x = "latent".to_string();
    let mut ops = g
        .net
        .layers
        .iter()
        .map(|(name, layer)| {
            let op =
                layer.onnx().ok_or_else(|| Error::Invalid(format!("cannot export layer {name}: it has no ONNX form")));
            op.map(|op| (name.as_str(), op))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .peekable();
    while let Some((name, mut op)) = ops.next() {
        if op.fold_axis.is_some() && ops.peek().is_some_and(|(_, next)| next.op == BATCH_NORM) {
            let (_, bn) = ops.next().expect("peeked");
            fold(&mut op, &bn)?;
        }
        let mut inputs = vec![x];
        for (tensor, value) in &op.constants {
            inputs.push(graph.initializer(&format!("{name}.{tensor}"), value));
        }
        let attrs = op.attrs.iter().map(|(n, a)| attribute(n, a)).collect();
        x = graph.node(op.op, name, &inputs, attrs);
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
        metadata_props: metadata(arch, labels)
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) })
            .collect(),
    })
}

/// The latent layout and provenance, as metadata properties; with `labels`, also
/// `code_to_label` (a JSON array: the label of each value of the first categorical
/// code, null for none) and `code_to_label_accuracy`.
pub fn metadata(arch: &Architecture, labels: Option<&CodeLabels>) -> Vec<(String, String)> {
    let l = &arch.latent;
    let join = |v: Vec<usize>| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    let (c, h, w) = arch.dataset.image_shape();
    let mut props: Vec<(String, String)> = vec![
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
    ];
    if let Some(m) = labels {
        props.push(("code_to_label".into(), serde_json::to_string(&m.labels).expect("labels serialise")));
        props.push(("code_to_label_accuracy".into(), format!("{:.4}", m.accuracy)));
    }
    props
}

/// Writes the ONNX file atomically.
pub fn save(model: &ModelProto, path: &Path) -> Result<()> {
    write_atomically(path, &model.encode_to_vec())
}

/// ONNX's batch norm operator, as `BatchNorm::onnx` gives it.
const BATCH_NORM: &str = "BatchNormalization";

/// Folds the batch norm `bn` (its constants weight, bias, running_mean and
/// running_var) into `op`'s weight and bias (its first two constants), along the
/// weight's output axis `op.fold_axis`.
fn fold(op: &mut OnnxOp, bn: &OnnxOp) -> Result<()> {
    let of_bn = |name: &str| match bn.constants.iter().find(|(n, _)| *n == name) {
        Some((_, OnnxConstant::Float(a))) => Some(a.view()),
        _ => None,
    };
    let eps = bn.attrs.iter().find_map(|(n, a)| match (n, a) {
        (&"epsilon", OnnxAttr::Float(e)) => Some(*e),
        _ => None,
    });
    let (Some(gamma), Some(beta), Some(mean), Some(var), Some(eps)) =
        (of_bn("weight"), of_bn("bias"), of_bn("running_mean"), of_bn("running_var"), eps)
    else {
        return Err(Error::Invalid(format!("cannot fold a {BATCH_NORM} without its statistics into {}", op.op)));
    };
    let scale: Array1<f32> =
        var.iter().zip(gamma.iter()).map(|(&var, &g)| (g as f64 / (var as f64 + eps as f64).sqrt()) as f32).collect();
    let axis = Axis(op.fold_axis.expect("a foldable layer"));
    let [(_, OnnxConstant::Float(weight)), (_, OnnxConstant::Float(bias)), ..] = &mut op.constants[..] else {
        return Err(Error::Invalid(format!("{} has no weight and bias to fold a batch norm into", op.op)));
    };
    for (o, mut slice) in weight.axis_iter_mut(axis).enumerate() {
        slice.mapv_inplace(|v| v * scale[o]);
    }
    for (o, b) in bias.iter_mut().enumerate() {
        *b = scale[o] * (*b - mean[o]) + beta[o];
    }
    Ok(())
}

fn attribute(name: &str, a: &OnnxAttr) -> AttributeProto {
    match a {
        OnnxAttr::Int(i) => attr_int(name, *i),
        OnnxAttr::Float(f) => attr_float(name, *f),
        OnnxAttr::Ints(v) => attr_ints(name, v),
    }
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    fn initializer(&mut self, name: &str, value: &OnnxConstant) -> String {
        self.initializers.push(match value {
            OnnxConstant::Float(t) => TensorProto {
                dims: t.shape().iter().map(|&d| d as i64).collect(),
                data_type: Some(FLOAT),
                int64_data: Vec::new(),
                name: Some(name.into()),
                raw_data: Some(t.iter().flat_map(|v| v.to_le_bytes()).collect()),
            },
            OnnxConstant::Int64(values) => TensorProto {
                dims: vec![values.len() as i64],
                data_type: Some(INT64),
                int64_data: values.to_vec(),
                name: Some(name.into()),
                raw_data: None,
            },
        });
        name.into()
    }

    /// Appends a node; its output is named after the node.
    fn node(&mut self, op: &str, name: &str, inputs: &[String], attribute: Vec<AttributeProto>) -> String {
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
