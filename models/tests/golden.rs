//! Golden test against `tests/data/mamba_tiny.safetensors`, computed in float64 by the public
//! `mambapy` package (see `tests/data/README.md`): output and every gradient of
//! `loss = sum(y * r)` must match within a relative error of 1e-4 in f32.
use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::Param;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use labbook_models::fused::ScanBackend;
use labbook_models::model::{MambaBlock, MambaConfig, Selection, SelectiveProjections};
use safetensors::{Dtype, SafeTensors};

mod common;
use common::{host, rel_err_of};

const TOL: f64 = 1e-4;

struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    fn load() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/mamba_tiny.safetensors"
        );
        Golden {
            bytes: std::fs::read(path).expect("golden file in models/tests/data"),
        }
    }

    fn get(&self, name: &str) -> (Vec<f64>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("tensor {name} in golden file"));
        let data = t.data();
        let v = match t.dtype() {
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        (v, t.shape().to_vec())
    }

    fn config(&self, name: &str) -> usize {
        self.get(&format!("config.{name}")).0[0] as usize
    }

    fn tensor<B: burn::tensor::backend::Backend, const D: usize>(
        &self,
        name: &str,
    ) -> Tensor<B, D> {
        let (v, shape) = self.get(name);
        let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }
}

/// Builds the stack with the golden weights (PyTorch `[out, in]` Linear weights transposed to
/// Burn's `[in, out]`; conv1d `[d_inner, 1, k]` reshaped to `[d_inner, k]`).
fn load_stack<B: ScanBackend>(g: &Golden) -> Vec<MambaBlock<B>> {
    let cfg = MambaConfig::new(g.config("d_model"))
        .with_d_state(g.config("d_state"))
        .with_expand(g.config("expand"))
        .with_d_conv(g.config("d_conv"))
        .with_dt_rank(Some(g.config("dt_rank")));
    let (di, k) = (cfg.d_inner(), cfg.d_conv);
    (0..g.config("n_layers"))
        .map(|i| {
            let p = |n: &str| format!("layers.{i}.{n}");
            let mut block = cfg.init_block::<B>(&Default::default());
            block.norm.gamma = Param::from_tensor(g.tensor(&p("norm.weight")));
            let m = &mut block.mixer;
            m.in_proj.weight =
                Param::from_tensor(g.tensor::<B, 2>(&p("mixer.in_proj.weight")).transpose());
            let conv_w = g.tensor::<B, 3>(&p("mixer.conv1d.weight")).reshape([di, k]);
            m.conv_weight = Some(Param::from_tensor(conv_w));
            m.conv_bias = Some(Param::from_tensor(g.tensor(&p("mixer.conv1d.bias"))));
            let Selection::Selective(SelectiveProjections { x_proj, dt_proj }) = &mut m.selection
            else {
                panic!("a selective mixer")
            };
            x_proj.weight =
                Param::from_tensor(g.tensor::<B, 2>(&p("mixer.x_proj.weight")).transpose());
            dt_proj.weight =
                Param::from_tensor(g.tensor::<B, 2>(&p("mixer.dt_proj.weight")).transpose());
            dt_proj.bias = Some(Param::from_tensor(g.tensor(&p("mixer.dt_proj.bias"))));
            m.a_log = Param::from_tensor(g.tensor(&p("mixer.A_log")));
            m.d = Param::from_tensor(g.tensor(&p("mixer.D")));
            m.out_proj.weight =
                Param::from_tensor(g.tensor::<B, 2>(&p("mixer.out_proj.weight")).transpose());
            block
        })
        .collect()
}

fn check_golden<B: AutodiffBackend + ScanBackend>() {
    let g = Golden::load();
    let stack = load_stack::<B>(&g);
    let x = g.tensor::<B, 3>("input.x").require_grad();
    let mut y = x.clone();
    for block in &stack {
        y = block.forward(y);
    }
    let (ry, _) = g.get("output.y");
    let e = rel_err_of(&host(y.clone()), &ry);
    eprintln!("output.y: rel err {e:.2e}");
    assert!(e <= TOL, "output y: rel err {e}");

    let grads = (y * g.tensor::<B, 3>("input.r")).sum().backward();
    let mut checked = Vec::new();
    let mut check = |name: String, ours: Vec<f64>| {
        let (reference, _) = g.get(&format!("grad.{name}"));
        let e = rel_err_of(&ours, &reference);
        eprintln!("grad.{name}: rel err {e:.2e}");
        assert!(e <= TOL, "grad.{name}: rel err {e}");
        checked.push(name);
    };
    check("input.x".into(), host(x.grad(&grads).unwrap()));
    for (i, block) in stack.iter().enumerate() {
        let p = |n: &str| format!("layers.{i}.{n}");
        let m = &block.mixer;
        let (conv_w, conv_b) = m.conv_or_identity();
        let di = m.d_inner();
        check(
            p("norm.weight"),
            host(block.norm.gamma.val().grad(&grads).unwrap()),
        );
        check(
            p("mixer.in_proj.weight"),
            host(m.in_proj.weight.val().grad(&grads).unwrap().transpose()),
        );
        check(
            p("mixer.conv1d.weight"),
            host(conv_w.grad(&grads).unwrap().reshape([di, 1, 4])),
        );
        check(p("mixer.conv1d.bias"), host(conv_b.grad(&grads).unwrap()));
        let SelectiveProjections { x_proj, dt_proj } = m.selective().unwrap();
        check(
            p("mixer.x_proj.weight"),
            host(x_proj.weight.val().grad(&grads).unwrap().transpose()),
        );
        check(
            p("mixer.dt_proj.weight"),
            host(dt_proj.weight.val().grad(&grads).unwrap().transpose()),
        );
        check(
            p("mixer.dt_proj.bias"),
            host(dt_proj.bias.as_ref().unwrap().val().grad(&grads).unwrap()),
        );
        check(p("mixer.A_log"), host(m.a_log.val().grad(&grads).unwrap()));
        check(p("mixer.D"), host(m.d.val().grad(&grads).unwrap()));
        check(
            p("mixer.out_proj.weight"),
            host(m.out_proj.weight.val().grad(&grads).unwrap().transpose()),
        );
    }
    // Every gradient in the file was compared.
    let st = SafeTensors::deserialize(&g.bytes).unwrap();
    let in_file = st
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad."))
        .count();
    assert_eq!(checked.len(), in_file, "compared {checked:?}");
}

#[test]
fn golden_mamba_flex() {
    check_golden::<Autodiff<Flex>>();
}

#[test]
fn golden_mamba_ndarray() {
    check_golden::<Autodiff<NdArray>>();
}

#[cfg(feature = "cuda")]
#[test]
fn golden_mamba_cuda() {
    check_golden::<Autodiff<burn::backend::Cuda>>();
}

/// The CubeCL scan kernels run through wgpu (e.g. lavapipe, no GPU needed); test-only feature.
#[cfg(feature = "wgpu")]
#[test]
fn golden_mamba_wgpu() {
    check_golden::<Autodiff<burn::backend::Wgpu>>();
}
