//! The dense layers' speed against the GEMM crate's own: GFLOP/s of one `matrixmultiply` product
//! of 4096×400 by 400×400, and of a DeepFM-sized MLP (390 → 400 → 400 → 400 → 1, batch 256)
//! forward and backward through `starling_core::nn`, on one core.
//!
//! `cargo run --release -p starling-core --example mlp_flops` (bench/deep.sh runs it).

use std::time::Instant;

use starling_core::nn::{
    init_segments, matmul, segments_len, Block, Cache, Grads, Mat, MatMut, Mlp, MlpOptions, Params, Pass,
};

/// Seconds per call of `f`, over enough calls to take about a second.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut n = 1;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let s = t.elapsed().as_secs_f64();
        if s > 1.0 {
            return s / n as f64;
        }
        n *= 2;
    }
}

fn main() {
    let (m, k, n) = (4096, 400, 400);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; m * n];
    let s = time(|| matmul(Mat::new(&a, m, k), Mat::new(&b, k, n), MatMut::new(&mut c, m, n), 0.0));
    let peak = 2.0 * (m * k * n) as f64 / s / 1e9;
    println!("gemm {m}x{k}x{n}: {peak:.1} GFLOP/s");

    let (batch, input, sizes) = (256, 390, [400, 400, 400, 1]);
    let mlp = Mlp::new(input, &sizes, MlpOptions::default());
    let mut w = vec![0f32; segments_len(&mlp.params())];
    init_segments(&mlp.params(), 1, 0, &mut w);
    let x: Vec<f32> = (0..batch * input).map(|i| ((i % 11) as f32 - 5.0) * 0.05).collect();
    let (mut out, mut dx, mut gw) = (vec![0f32; batch], vec![0f32; batch * input], vec![0f32; w.len()]);
    let dout = vec![0.01f32; batch];
    let mut cache = Cache::default();
    let pass = Pass { batch, train: true, seed: 0 };
    let s = time(|| {
        let p = Params { w: &w, stats: &[] };
        mlp.forward(&pass, p, &[&x], &mut out, &mut cache);
        mlp.backward(
            &pass,
            p,
            &[&x],
            &out,
            &dout,
            &mut [&mut dx[..]],
            Grads { w: &mut gw, stats: &mut [] },
            &mut cache,
        );
    });
    // Forward: one product per layer; backward: two (weights and inputs).
    let mut widths = vec![input];
    widths.extend(sizes);
    let flops: f64 = widths.windows(2).map(|p| 2.0 * (batch * p[0] * p[1]) as f64 * 3.0).sum();
    let achieved = flops / s / 1e9;
    println!(
        "mlp {input}-400-400-400-1, batch {batch}, forward+backward: {achieved:.1} GFLOP/s ({:.0}% of the gemm's), {:.0} examples/s",
        100.0 * achieved / peak,
        batch as f64 / s
    );
}
