//! Weights in and out as safetensors with PyTorch names and layouts, so a colleague can load
//! a run in PyTorch and a run can start from weights trained elsewhere (`train.init_from`).
//!
//! Names are those of `mambapy`'s `LM` `state_dict` (`embedding.weight`,
//! `mamba.layers.{i}.norm.weight`, `mamba.layers.{i}.mixer.{in_proj.weight, conv1d.weight,
//! conv1d.bias, x_proj.weight, dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight}`,
//! `norm_f.weight`, `lm_head.weight`), with PyTorch's `[out, in]` `Linear` layout and the
//! conv weight as `[d_inner, 1, d_conv]`. Layers mambapy does not have keep the same scheme:
//! an attention layer is `mamba.layers.{i}.attn.{norm1.weight, qkv.weight, out.weight,
//! norm2.weight, fc1.weight, fc1.bias, fc2.weight, fc2.bias}` (plus `ssmax_scale` `[heads]`
//! and `rel_bias` `[heads, 32]` for those attention variants, `mlp_conv.{weight, bias}` with
//! `mlp_conv`); a Mamba layer with `conv_kind = "none"` has no `conv1d.*`, one with `conv_bc`
//! adds `conv1d_bc.{weight, bias}` (`[2N, 1, d_conv]`, `[2N]`); a conv mixer layer (`C`) is `mamba.layers.{i}.conv.{norm1.weight,
//! in_proj.weight, conv1d.weight, conv1d.bias, out_proj.weight, norm2.weight, fc1.*, fc2.*}`;
//! the LTI ablation's constants
//! are `mixer.lti_dt`, `mixer.lti_b`, `mixer.lti_c`. The file's metadata records the layer
//! pattern and vocabulary, which loading checks.
use std::collections::HashMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::fused::host_values as host;
use crate::model::{Block, Lm, Selection};

/// How a burn parameter is laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// As is.
    Same,
    /// A burn `Linear` weight `[in, out]`, stored `[out, in]`.
    Transposed,
    /// The depthwise conv weight `[d_inner, d_conv]`, stored `[d_inner, 1, d_conv]`.
    Conv,
}

/// A parameter of the model with its file name.
enum Slot<'a, B: Backend> {
    D1(String, &'a mut Param<Tensor<B, 1>>),
    D2(String, &'a mut Param<Tensor<B, 2>>, Layout),
}

/// Every parameter of `lm` in file order, mutable so that loading can replace it.
fn slots<B: Backend>(lm: &mut Lm<B>) -> Vec<Slot<'_, B>> {
    fn linear<'a, B: Backend>(out: &mut Vec<Slot<'a, B>>, name: &str, l: &'a mut Linear<B>) {
        out.push(Slot::D2(
            format!("{name}.weight"),
            &mut l.weight,
            Layout::Transposed,
        ));
        if let Some(b) = &mut l.bias {
            out.push(Slot::D1(format!("{name}.bias"), b));
        }
    }
    let mut out = Vec::new();
    out.push(Slot::D2(
        "embedding.weight".into(),
        &mut lm.embedding.weight,
        Layout::Same,
    ));
    for (i, block) in lm.blocks.iter_mut().enumerate() {
        let layer = format!("mamba.layers.{i}");
        match block {
            Block::Mamba(b) => {
                out.push(Slot::D1(format!("{layer}.norm.weight"), &mut b.norm.gamma));
                let m = &mut b.mixer;
                let p = format!("{layer}.mixer");
                linear(&mut out, &format!("{p}.in_proj"), &mut m.in_proj);
                if let (Some(w), Some(b)) = (&mut m.conv_weight, &mut m.conv_bias) {
                    out.push(Slot::D2(format!("{p}.conv1d.weight"), w, Layout::Conv));
                    out.push(Slot::D1(format!("{p}.conv1d.bias"), b));
                }
                if let (Some(w), Some(b)) = (&mut m.bc_conv_weight, &mut m.bc_conv_bias) {
                    out.push(Slot::D2(format!("{p}.conv1d_bc.weight"), w, Layout::Conv));
                    out.push(Slot::D1(format!("{p}.conv1d_bc.bias"), b));
                }
                match &mut m.selection {
                    Selection::Selective(s) => {
                        linear(&mut out, &format!("{p}.x_proj"), &mut s.x_proj);
                        linear(&mut out, &format!("{p}.dt_proj"), &mut s.dt_proj);
                    }
                    Selection::Lti(l) => {
                        out.push(Slot::D1(format!("{p}.lti_dt"), &mut l.lti_dt));
                        out.push(Slot::D1(format!("{p}.lti_b"), &mut l.lti_b));
                        out.push(Slot::D1(format!("{p}.lti_c"), &mut l.lti_c));
                    }
                }
                out.push(Slot::D2(format!("{p}.A_log"), &mut m.a_log, Layout::Same));
                out.push(Slot::D1(format!("{p}.D"), &mut m.d));
                linear(&mut out, &format!("{p}.out_proj"), &mut m.out_proj);
            }
            Block::Attention(a) => {
                let p = format!("{layer}.attn");
                out.push(Slot::D1(format!("{p}.norm1.weight"), &mut a.norm1.gamma));
                linear(&mut out, &format!("{p}.qkv"), &mut a.qkv);
                linear(&mut out, &format!("{p}.out"), &mut a.out);
                out.push(Slot::D1(format!("{p}.norm2.weight"), &mut a.norm2.gamma));
                linear(&mut out, &format!("{p}.fc1"), &mut a.fc1);
                linear(&mut out, &format!("{p}.fc2"), &mut a.fc2);
                if let Some(s) = &mut a.ssmax_scale {
                    out.push(Slot::D1(format!("{p}.ssmax_scale"), s));
                }
                if let Some(t) = &mut a.rel_bias {
                    out.push(Slot::D2(format!("{p}.rel_bias"), t, Layout::Same));
                }
                if let (Some(w), Some(b)) = (&mut a.mlp_conv_weight, &mut a.mlp_conv_bias) {
                    out.push(Slot::D2(format!("{p}.mlp_conv.weight"), w, Layout::Conv));
                    out.push(Slot::D1(format!("{p}.mlp_conv.bias"), b));
                }
            }
            Block::Conv(c) => {
                let p = format!("{layer}.conv");
                out.push(Slot::D1(format!("{p}.norm1.weight"), &mut c.norm1.gamma));
                linear(&mut out, &format!("{p}.in_proj"), &mut c.in_proj);
                out.push(Slot::D2(
                    format!("{p}.conv1d.weight"),
                    &mut c.conv_weight,
                    Layout::Conv,
                ));
                out.push(Slot::D1(format!("{p}.conv1d.bias"), &mut c.conv_bias));
                linear(&mut out, &format!("{p}.out_proj"), &mut c.out_proj);
                out.push(Slot::D1(format!("{p}.norm2.weight"), &mut c.norm2.gamma));
                linear(&mut out, &format!("{p}.fc1"), &mut c.fc1);
                linear(&mut out, &format!("{p}.fc2"), &mut c.fc2);
            }
        }
    }
    out.push(Slot::D1("norm_f.weight".into(), &mut lm.norm_f.gamma));
    linear(&mut out, "lm_head", &mut lm.head);
    out
}

/// Why weights could not be written or read; the message names the file and the tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// Writes `lm`'s weights to `out` (see the module docs), with `pattern` and the vocabulary in
/// the metadata. (`&mut` because parameters are read in place: a clone of a model whose
/// parameters were never used would draw its own.)
pub fn save<B: Backend>(lm: &mut Lm<B>, pattern: &str, out: &Path) -> Result<(), ExportError> {
    let vocab = lm.embedding.weight.val().dims()[0];
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for slot in slots(lm) {
        let (name, shape, values) = match slot {
            Slot::D1(name, p) => {
                let t = p.val();
                (name, t.dims().to_vec(), host(t))
            }
            Slot::D2(name, p, layout) => {
                let t = p.val();
                let [a, b] = t.dims();
                match layout {
                    Layout::Same => (name, vec![a, b], host(t)),
                    Layout::Transposed => (name, vec![b, a], host(t.transpose())),
                    Layout::Conv => (name, vec![a, 1, b], host(t)),
                }
            }
        };
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name, shape, bytes));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| ExportError(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([
        ("format".to_string(), "labbook-lm".to_string()),
        ("pattern".to_string(), pattern.to_string()),
        ("vocab_size".to_string(), vocab.to_string()),
    ]);
    safetensors::serialize_to_file(views, Some(meta), out)
        .map_err(|e| ExportError(format!("{}: {e}", out.display())))
}

/// Replaces `lm`'s weights with those in `path`. Every parameter must be there with its
/// shape; the file's pattern and vocabulary, when recorded, must match.
pub fn load<B: Backend>(
    mut lm: Lm<B>,
    pattern: &str,
    path: &Path,
    device: &B::Device,
) -> Result<Lm<B>, ExportError> {
    let fail = |m: String| ExportError(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| fail(format!("not safetensors: {e}")))?;
    if let Some(meta) = header.metadata()
        && let Some(theirs) = meta.get("pattern")
        && theirs != pattern
    {
        return Err(fail(format!(
            "the weights are for layer pattern {theirs}, this run's is {pattern}"
        )));
    }
    let file =
        SafeTensors::deserialize(&bytes).map_err(|e| fail(format!("not safetensors: {e}")))?;
    let read = |name: &str, want: &[usize]| -> Result<Vec<f32>, ExportError> {
        let view = file
            .tensor(name)
            .map_err(|_| fail(format!("no tensor {name}")))?;
        if view.shape() != want {
            return Err(fail(format!(
                "{name} has shape {:?}, this model needs {want:?}",
                view.shape()
            )));
        }
        let values = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => return Err(fail(format!("{name} is {other:?}; f32 or f64 expected"))),
        };
        Ok(values)
    };
    let slots = slots(&mut lm);
    // A tensor this model has no place for means the file is of another model (e.g. one with
    // a conv this one was configured without): refused rather than silently dropped.
    let wanted: std::collections::HashSet<&str> = slots
        .iter()
        .map(|s| match s {
            Slot::D1(n, _) | Slot::D2(n, _, _) => n.as_str(),
        })
        .collect();
    let mut extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|n| !wanted.contains(n))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(fail(format!(
            "has tensors this model does not ({}); was it trained with other [model] options?",
            extra.join(", ")
        )));
    }
    for slot in slots {
        match slot {
            Slot::D1(name, p) => {
                let dims = p.val().dims();
                let v = read(&name, &dims)?;
                *p = Param::from_tensor(Tensor::from_data(TensorData::new(v, dims), device));
            }
            Slot::D2(name, p, layout) => {
                let [a, b] = p.val().dims();
                let t = match layout {
                    Layout::Same => {
                        Tensor::from_data(TensorData::new(read(&name, &[a, b])?, [a, b]), device)
                    }
                    Layout::Transposed => Tensor::<B, 2>::from_data(
                        TensorData::new(read(&name, &[b, a])?, [b, a]),
                        device,
                    )
                    .transpose(),
                    Layout::Conv => {
                        Tensor::from_data(TensorData::new(read(&name, &[a, 1, b])?, [a, b]), device)
                    }
                };
                *p = Param::from_tensor(t);
            }
        }
    }
    Ok(lm)
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;

    use super::*;
    use crate::model::LmConfig;

    type B = NdArray;

    fn all_values(lm: &mut Lm<B>) -> Vec<(String, Vec<f32>)> {
        slots(lm)
            .into_iter()
            .map(|s| match s {
                Slot::D1(n, p) => (n, host(p.val())),
                Slot::D2(n, p, _) => (n, host(p.val())),
            })
            .collect()
    }

    #[test]
    fn a_hybrid_round_trips_and_mamba_layers_use_mambapy_names() {
        let device = Default::default();
        let cfg = LmConfig::new(11, 16, "MAM".to_string())
            .with_d_state(4)
            .with_n_heads(2);
        let mut a: Lm<B> = cfg.init(&device);
        let path =
            std::env::temp_dir().join(format!("labbook-export-{}.safetensors", std::process::id()));
        save(&mut a, "MAM", &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        // mambapy's names and PyTorch layouts (d_inner 32, dt_rank 1, N 4, d_conv 4).
        for (name, shape) in [
            ("embedding.weight", vec![11, 16]),
            ("mamba.layers.0.mixer.in_proj.weight", vec![64, 16]),
            ("mamba.layers.0.mixer.conv1d.weight", vec![32, 1, 4]),
            ("mamba.layers.0.mixer.x_proj.weight", vec![1 + 8, 32]),
            ("mamba.layers.0.mixer.dt_proj.weight", vec![32, 1]),
            ("mamba.layers.0.mixer.dt_proj.bias", vec![32]),
            ("mamba.layers.2.mixer.A_log", vec![32, 4]),
            ("mamba.layers.1.attn.qkv.weight", vec![48, 16]),
            ("norm_f.weight", vec![16]),
            ("lm_head.weight", vec![11, 16]),
        ] {
            assert_eq!(
                file.tensor(name).unwrap().shape(),
                shape.as_slice(),
                "{name}"
            );
        }
        let b: Lm<B> = cfg.init(&device);
        let mut b = load(b, "MAM", &path, &device).unwrap();
        let (va, vb) = (all_values(&mut a), all_values(&mut b));
        assert_eq!(va.len(), vb.len());
        for ((name, x), (_, y)) in va.iter().zip(&vb) {
            assert!(x == y, "{name} changed in the round trip");
        }
        let e = load(cfg.init::<B>(&device), "MMM", &path, &device).unwrap_err();
        assert!(e.0.contains("layer pattern MAM, this run's is MMM"), "{e}");
        let wider = LmConfig::new(11, 24, "MAM".to_string())
            .with_d_state(4)
            .with_n_heads(2);
        let e = load(wider.init::<B>(&device), "MAM", &path, &device).unwrap_err();
        assert!(
            e.0.contains("embedding.weight has shape [11, 16], this model needs [11, 24]"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    /// The research options' parameters (no Mamba conv, the `[B | C]` conv, ssmax scales, the
    /// learned bias, the MLP conv, a `C` layer) survive a round trip, and a file without a
    /// parameter the model has, or with one it lacks, is refused by name.
    #[test]
    fn research_option_parameters_round_trip_and_mismatches_are_named() {
        use crate::model::{AttnBias, AttnSoftmax, MambaConv};
        let device = Default::default();
        let base = LmConfig::new(11, 16, "MAC".to_string())
            .with_d_state(4)
            .with_n_heads(2);
        let cfg = base
            .clone()
            .with_conv_kind(MambaConv::None)
            .with_conv_bc(true)
            .with_attn_softmax(AttnSoftmax::Ssmax)
            .with_attn_bias(AttnBias::Learned)
            .with_mlp_conv(3);
        let path = std::env::temp_dir().join(format!(
            "labbook-export-options-{}.safetensors",
            std::process::id()
        ));
        let mut a: Lm<B> = cfg.init(&device);
        save(&mut a, "MAC", &path).unwrap();
        let file_names: Vec<String> = {
            let bytes = std::fs::read(&path).unwrap();
            let file = SafeTensors::deserialize(&bytes).unwrap();
            file.names().into_iter().map(str::to_string).collect()
        };
        for name in [
            "mamba.layers.0.mixer.conv1d_bc.weight",
            "mamba.layers.1.attn.ssmax_scale",
            "mamba.layers.1.attn.rel_bias",
            "mamba.layers.1.attn.mlp_conv.weight",
            "mamba.layers.2.conv.conv1d.weight",
        ] {
            assert!(file_names.iter().any(|n| n == name), "{name} not exported");
        }
        assert!(
            !file_names
                .iter()
                .any(|n| n == "mamba.layers.0.mixer.conv1d.weight"),
            "conv_kind none exported a conv"
        );
        let mut b = load(cfg.init::<B>(&device), "MAC", &path, &device).unwrap();
        let (va, vb) = (all_values(&mut a), all_values(&mut b));
        assert_eq!(va.len(), vb.len());
        for ((name, x), (_, y)) in va.iter().zip(&vb) {
            assert!(x == y, "{name} changed in the round trip");
        }
        // Into the plain model: the file has a [B | C] conv it has no place for …
        let e = load(base.init::<B>(&device), "MAC", &path, &device).unwrap_err();
        assert!(e.0.contains("conv1d_bc.weight"), "{e}");
        // … and the plain model's file has a Mamba conv this one was configured without.
        save(&mut base.init::<B>(&device), "MAC", &path).unwrap();
        let e = load(cfg.init::<B>(&device), "MAC", &path, &device).unwrap_err();
        assert!(e.0.contains("mamba.layers.0.mixer.conv1d.weight"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}
