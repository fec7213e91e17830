//! Between the backends' tensors and the host kernels: each fused op's `*_on_host` downloads
//! its inputs, runs the host forward and uploads the output, keeping the op's state for the
//! backward; `download` and `upload` are the copies every op shares.
use super::*;

/// Token ids as host `i64`s, and their `[batch, L]` shape.
pub(super) fn download_tokens<B: Backend>(tokens: IntTensor<B>) -> (Vec<i64>, [usize; 2]) {
    let t = Tensor::<B, 2, Int>::from_primitive(tokens);
    let dims = t.dims();
    let v = t
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("token ids convert to i64");
    (v, dims)
}

/// [`HostBlock::forward`] on a backend's tensors: the block (its backward's state) and `out`.
pub(super) fn block_on_host<B: Backend>(
    inputs: [FloatTensor<B>; slot::COUNT],
    eps: f64,
    options: BlockOptions,
    state: &BlockState,
) -> (HostBlock, FloatTensor<B>) {
    let device = B::float_device(&inputs[slot::X]);
    let (mut dims, host) = load_block::<B>(inputs);
    dims.dilation = options.dilation;
    dims.conv_bc = options.conv_bc;
    let h0 = state.initial.as_deref().map(Vec::as_slice);
    let (block, out) = HostBlock::forward(dims, eps as f32, host, h0);
    if let Some(sink) = &state.last {
        *sink.lock().expect("state sink") = block.last_state();
    }
    let out = upload::<B, 3>(out, [dims.batch, dims.len, dims.d_model], &device);
    (block, out)
}

/// [`HostRmsNorm::forward`] on a backend's tensors: the norm (its backward's state) and `out`.
pub(super) fn rms_norm_on_host<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    eps: f64,
) -> (HostRmsNorm, FloatTensor<B>) {
    let device = B::float_device(&x);
    let (x, [batch, len, d]) = download::<B, 3>(x);
    let (gamma, _) = download::<B, 1>(gamma);
    let (norm, out) = HostRmsNorm::forward(x, gamma, eps as f32, [batch, len]);
    (norm, upload::<B, 3>(out, [batch, len, d], &device))
}

/// [`HostAttention::forward`] on a backend's tensors: the op (its backward's state) and the
/// output.
pub(super) fn attention_on_host<B: Backend>(
    qkv: FloatTensor<B>,
    scale: FloatTensor<B>,
    table: FloatTensor<B>,
    heads: usize,
    rope: bool,
    variant: Variant,
) -> (HostAttention, FloatTensor<B>) {
    let device = B::float_device(&qkv);
    let (qkv, [batch, len, three_d]) = download::<B, 3>(qkv);
    let (scale, _) = download::<B, 1>(scale);
    let (table, _) = download::<B, 2>(table);
    let dims = AttentionDims {
        batch,
        len,
        d: three_d / 3,
        heads,
        rope,
    };
    let (op, out) = HostAttention::forward(qkv, dims, variant, scale, table);
    (op, upload::<B, 3>(out, [batch, len, dims.d], &device))
}

/// [`HostLinear::forward`] on a backend's tensors: the op (its backward's state) and `y`.
pub(super) fn linear_on_host<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
    gelu: bool,
) -> (HostLinear, FloatTensor<B>) {
    let device = B::float_device(&x);
    let (x, dims) = download::<B, 3>(x);
    let (w, _) = download::<B, 2>(w);
    let (b, [d_out]) = download::<B, 1>(b);
    let (op, y) = HostLinear::forward(x, dims, w, &b, gelu);
    (op, upload::<B, 3>(y, [dims[0], dims[1], d_out], &device))
}

/// [`HostGelu::forward`] on a backend's tensors.
pub(super) fn gelu_on_host<B: Backend>(x: FloatTensor<B>) -> (HostGelu, FloatTensor<B>) {
    let device = B::float_device(&x);
    let (x, shape) = download::<B, 3>(x);
    let (op, y) = HostGelu::forward(x, shape);
    (op, upload::<B, 3>(y, shape, &device))
}

/// [`HostEmbedding::forward`] on a backend's tensors: the embedding (its backward's state) and
/// `out`.
pub(super) fn embedding_on_host<B: Backend>(
    weights: FloatTensor<B>,
    tokens: IntTensor<B>,
) -> (HostEmbedding, FloatTensor<B>) {
    let device = B::float_device(&weights);
    let (weights, [vocab, d]) = download::<B, 2>(weights);
    let (tokens, [batch, len]) = download_tokens::<B>(tokens);
    let (emb, out) = HostEmbedding::forward(&weights, vocab, &tokens);
    (emb, upload::<B, 3>(out, [batch, len, d], &device))
}

/// [`HostHeadLoss::forward`] on a backend's tensors: the op (its backward's state) and
/// `[loss, correct]`.
pub(super) fn head_loss_on_host<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    targets: IntTensor<B>,
    weights: FloatTensor<B>,
) -> (HostHeadLoss, [FloatTensor<B>; 2]) {
    let device = B::float_device(&x);
    let (x, dims) = download::<B, 3>(x);
    let (w, _) = download::<B, 2>(w);
    let (targets, _) = download_tokens::<B>(targets);
    let (weights, _) = download::<B, 2>(weights);
    let (op, v) = HostHeadLoss::forward(x, dims, w, &targets, weights);
    let scalar = |v: f32| upload::<B, 1>(vec![v], [1], &device);
    (op, [scalar(v.loss), scalar(v.correct)])
}

/// A tensor's values on the host as `f32`, row-major ([`download`] for a `Tensor`).
pub(crate) fn host_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    download::<B, D>(t.into_primitive().tensor()).0
}

pub(crate) fn download<B: Backend, const D: usize>(t: FloatTensor<B>) -> (Vec<f32>, [usize; D]) {
    let t = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
    let dims = t.dims();
    // `× 1` makes a fresh, unshared tensor: ndarray hands a shared or strided array to
    // `into_data` through an element-by-element iterator (perf: ~10% of a Mamba training
    // step), while the multiply runs over contiguous memory and the result moves out copy-free.
    let v = (t * 1.0)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("host copy: tensor data converts to f32");
    (v, dims)
}

/// The scan's six host gradients as tensors: `dims` = `[batch, L, d_inner]`, `n` = state size.
pub(super) fn upload_grads<B: Backend>(
    g: host::HostGrads,
    dims: [usize; 3],
    n: usize,
    device: &B::Device,
) -> [FloatTensor<B>; 6] {
    let [bt, l, ch] = dims;
    [
        upload::<B, 3>(g.du, dims, device),
        upload::<B, 3>(g.ddelta, dims, device),
        upload::<B, 2>(g.da, [ch, n], device),
        upload::<B, 3>(g.db, [bt, l, n], device),
        upload::<B, 3>(g.dc, [bt, l, n], device),
        upload::<B, 1>(g.dd, [ch], device),
    ]
}

pub(super) fn upload<B: Backend, const D: usize>(
    v: Vec<f32>,
    dims: [usize; D],
    device: &B::Device,
) -> FloatTensor<B> {
    Tensor::<B, D>::from_data(TensorData::new(v, dims), device)
        .into_primitive()
        .tensor()
}

/// [`GatedScan::forward`] on a backend's tensors: the scan (its backward's state) and `y`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gated_on_host<B: Backend>(
    u: FloatTensor<B>,
    delta_raw: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    c: FloatTensor<B>,
    d: FloatTensor<B>,
    z: FloatTensor<B>,
) -> (GatedScan, FloatTensor<B>) {
    let device = B::float_device(&u);
    let (z, _) = download::<B, 3>(z);
    let mut g = GatedScan::new(HostInputs::load::<B>(u, delta_raw, a, b, c, d), z);
    let y = g.forward();
    let y = upload::<B, 3>(y, g.scan.dims(), &device);
    (g, y)
}

/// Host copies of [`mamba_block`]'s inputs and the sizes read off their shapes.
pub(super) fn load_block<B: Backend>(
    inputs: [FloatTensor<B>; slot::COUNT],
) -> (BlockDims, [Vec<f32>; slot::COUNT]) {
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let (x, cw, dtw, al) = (
        &shapes[slot::X],
        &shapes[slot::CONV_W],
        &shapes[slot::DT_W],
        &shapes[slot::A_LOG],
    );
    let dims = BlockDims {
        batch: x[0],
        len: x[1],
        d_model: x[2],
        d_inner: cw[0],
        state: al[1],
        rank: dtw[0],
        kernel: cw[1],
        dilation: 1,
        bc_kernel: shapes[slot::CONV_BC_W][1],
        conv_bc: false,
    };
    assert_eq!(
        shapes,
        dims.input_shapes(),
        "mamba_block: inconsistent shapes"
    );
    (dims, inputs.map(download_flat::<B>))
}

/// A tensor of any rank as a row-major host vector.
pub(super) fn download_flat<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    match t.shape().num_dims() {
        1 => download::<B, 1>(t).0,
        2 => download::<B, 2>(t).0,
        3 => download::<B, 3>(t).0,
        rank => unreachable!("mamba_block: no input has rank {rank}"),
    }
}

/// [`ConvSilu::forward`] on a backend's tensors: the conv (its backward's state) and `out`.
pub(super) fn conv_on_host<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: FloatTensor<B>,
    silu: bool,
    dilation: usize,
) -> (ConvSilu, FloatTensor<B>) {
    let device = B::float_device(&x);
    let (x, dims) = download::<B, 3>(x);
    let (w, _) = download::<B, 2>(w);
    let (bias, _) = download::<B, 1>(bias);
    let mut cv = ConvSilu::new(x, dims, &w, bias, silu, dilation);
    let out = upload::<B, 3>(cv.forward(), dims, &device);
    (cv, out)
}

impl HostInputs {
    pub(super) fn load<B: Backend>(
        u: FloatTensor<B>,
        delta: FloatTensor<B>,
        a: FloatTensor<B>,
        b: FloatTensor<B>,
        c: FloatTensor<B>,
        d: FloatTensor<B>,
    ) -> Self {
        let (u, [batch, len, channels]) = download::<B, 3>(u);
        let (delta, _) = download::<B, 3>(delta);
        let (a, [_, state]) = download::<B, 2>(a);
        let (b, _) = download::<B, 3>(b);
        let (c, _) = download::<B, 3>(c);
        let (d, _) = download::<B, 1>(d);
        Self {
            batch,
            len,
            channels,
            state,
            u,
            delta,
            a,
            b,
            c,
            d,
            h0: None,
        }
    }
}
