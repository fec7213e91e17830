//! The fused selective scan (forward and hand-written backward) against the sequential
//! tensor-op reference, on random shapes and seeds.
use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use labbook_models::fused::{ScanBackend, selective_scan, selective_scan_reference};

mod common;
use common::rel_err;

struct Inputs<B: Backend> {
    u: Tensor<B, 3>,
    delta: Tensor<B, 3>,
    a: Tensor<B, 2>,
    b: Tensor<B, 3>,
    c: Tensor<B, 3>,
    d: Tensor<B, 1>,
    r: Tensor<B, 3>,
}

fn inputs<B: Backend>(seed: u64, [batch, len, ch, n]: [usize; 4]) -> Inputs<B> {
    let dev = Default::default();
    B::seed(&dev, seed);
    let normal = Distribution::Normal(0.0, 1.0);
    let pre = Tensor::<B, 3>::random([batch, len, ch], normal, &dev);
    Inputs {
        u: Tensor::random([batch, len, ch], normal, &dev),
        // Δ in a realistic positive range, A negative.
        delta: (pre.exp() + 1.0).log() * 0.5,
        a: Tensor::<B, 2>::random([ch, n], Distribution::Normal(0.0, 0.5), &dev)
            .exp()
            .neg(),
        b: Tensor::random([batch, len, n], normal, &dev),
        c: Tensor::random([batch, len, n], normal, &dev),
        d: Tensor::random([ch], normal, &dev),
        r: Tensor::random([batch, len, ch], normal, &dev),
    }
}

const SHAPES: [[usize; 4]; 5] = [
    [1, 1, 1, 1],
    [2, 7, 3, 4],
    [3, 13, 5, 16],
    [2, 33, 8, 3],
    [1, 64, 4, 16],
];

fn forward_matches<B: ScanBackend>() {
    for (seed, shape) in SHAPES.into_iter().enumerate() {
        let x = inputs::<B>(seed as u64 + 10, shape);
        let fast = selective_scan(
            x.u.clone(),
            x.delta.clone(),
            x.a.clone(),
            x.b.clone(),
            x.c.clone(),
            x.d.clone(),
        );
        let slow = selective_scan_reference(x.u, x.delta, x.a, x.b, x.c, x.d);
        let e = rel_err(fast, slow);
        assert!(
            e <= 1e-5,
            "shape {shape:?} seed {seed}: forward rel err {e}"
        );
    }
}

#[test]
fn forward_matches_reference_flex() {
    forward_matches::<Flex>();
}

#[test]
fn forward_matches_reference_ndarray() {
    forward_matches::<NdArray>();
}

fn gradients_match<B: AutodiffBackend + ScanBackend>() {
    for (seed, shape) in SHAPES.into_iter().enumerate() {
        let x = inputs::<B>(seed as u64 + 100, shape);
        let run = |fast: bool| {
            let u = x.u.clone().detach().require_grad();
            let delta = x.delta.clone().detach().require_grad();
            let a = x.a.clone().detach().require_grad();
            let b = x.b.clone().detach().require_grad();
            let c = x.c.clone().detach().require_grad();
            let d = x.d.clone().detach().require_grad();
            let y = if fast {
                selective_scan(
                    u.clone(),
                    delta.clone(),
                    a.clone(),
                    b.clone(),
                    c.clone(),
                    d.clone(),
                )
            } else {
                selective_scan_reference(
                    u.clone(),
                    delta.clone(),
                    a.clone(),
                    b.clone(),
                    c.clone(),
                    d.clone(),
                )
            };
            let grads = (y * x.r.clone()).sum().backward();
            (
                u.grad(&grads).unwrap(),
                delta.grad(&grads).unwrap(),
                a.grad(&grads).unwrap(),
                b.grad(&grads).unwrap(),
                c.grad(&grads).unwrap(),
                d.grad(&grads).unwrap(),
            )
        };
        let (f, s) = (run(true), run(false));
        let errs = [
            ("u", rel_err(f.0, s.0)),
            ("delta", rel_err(f.1, s.1)),
            ("a", rel_err(f.2, s.2)),
            ("b", rel_err(f.3, s.3)),
            ("c", rel_err(f.4, s.4)),
            ("d", rel_err(f.5, s.5)),
        ];
        for (name, e) in errs {
            assert!(
                e <= 1e-4,
                "shape {shape:?} seed {seed}: d{name} rel err {e}"
            );
        }
    }
}

#[test]
fn gradients_match_reference_flex() {
    gradients_match::<Autodiff<Flex>>();
}

#[test]
fn gradients_match_reference_ndarray() {
    gradients_match::<Autodiff<NdArray>>();
}

#[test]
fn only_tracked_inputs_get_gradients() {
    type B = Autodiff<Flex>;
    let x = inputs::<B>(7, [2, 5, 3, 4]);
    let u = x.u.clone().require_grad();
    let y = selective_scan(u.clone(), x.delta, x.a, x.b, x.c, x.d);
    let grads = y.sum().backward();
    assert!(u.grad(&grads).is_some());
}
