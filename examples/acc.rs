use simdnorm::LayerNorm;
fn main() {
    let (rows, n) = (1024usize, 4096usize);
    let mut s = 0x9e37_79b9_u32;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s as f64 / u32::MAX as f64
    };
    let x: Vec<f32> = (0..rows * n)
        .map(|_| (1.0e4 + (0..12).map(|_| u()).sum::<f64>() - 6.0) as f32)
        .collect();
    let mut y = vec![0.0f32; x.len()];
    let (mut m, mut r) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    LayerNorm::new(n)
        .forward_with_stats(&x, &mut y, &mut m, &mut r)
        .unwrap();
    let (mut em, mut er, mut ey) = (0.0f64, 0.0f64, 0.0f64);
    for (i, row) in x.chunks(n).enumerate() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let a = 1.0 / (var + 1e-5).sqrt();
        em = em.max((m[i] as f64 - mean).abs());
        er = er.max((r[i] as f64 - a).abs() / a);
        for (j, &v) in row.iter().enumerate() {
            ey = ey.max((y[i * n + j] as f64 - (v as f64 - mean) * a).abs());
        }
    }
    println!(
        "mean abs err {em:.2e}  rstd rel err {er:.2e} ({:.1} ulp)  y max abs err {ey:.2e}",
        er / f32::EPSILON as f64
    );
}
