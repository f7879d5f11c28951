//! `cargo run --release -p hypoforge-bench --features gemm-candidates --bin gemm [-- --ms N --rounds R]`:
//! single-threaded f32 matrix
//! products on the shapes of one-pass MLP training, for choosing the CPU training kernel.
//!
//! Candidates: `matrixmultiply::sgemm`, `gemm::gemm` (`Parallelism::None`), `faer`'s `matmul`
//! (`Par::Seq`), against two floors written here: a naive triple loop and a register-tiled loop
//! (B packed row-contiguous when it is a transposed view). The tiled loop sums every output over
//! `k` in order, exactly as the naive loop does, so its bits equal the naive loop's on every CPU;
//! it is also built for AVX2 and AVX-512F (no FMA: same bits, wider vectors).
//!
//! For a batch of 64 and a layer `in → out` (weights `W` row-major `out × in`), one training step
//! does three products:
//!
//! - forward `Z = X · Wᵀ` (`64×in · in×out`, `Wᵀ` a transposed view of `W`);
//! - backward `dX = dZ · W` (`64×out · out×in`);
//! - weight gradient `dW = dZᵀ · X` (`out×64 · 64×in`, `dZᵀ` a transposed view of `dZ`).
//!
//! Prints Markdown: GFLOP/s (`2·m·n·k` over the median time of one call), the time of a whole
//! step per network, and the checks: bits across repeated calls and threads, differences between
//! implementations and against an f64 reference, and a digest of every output's bits (compare it
//! across machines or builds).

use std::hint::black_box;
use std::time::{Duration, Instant};

use hypoforge_spec::rng::Rng;

const BATCH: usize = 64;

/// The layers of the two reference networks: digits 64-128-128-10 and mnist 784-256-256-10.
const LAYERS: [(&str, usize, usize); 6] = [
    ("digits", 64, 128),
    ("digits", 128, 128),
    ("digits", 128, 10),
    ("mnist", 784, 256),
    ("mnist", 256, 256),
    ("mnist", 256, 10),
];

/// A read-only strided matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(rows > 0 && cols > 0);
        assert!(
            (rows - 1) * rs + (cols - 1) * cs < data.len(),
            "view out of bounds"
        );
        View {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols);
        View::new(data, rows, cols, cols, 1)
    }

    /// The transpose, without a copy.
    fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Naive,
    Tiled,
    #[cfg(target_arch = "x86_64")]
    TiledAvx2,
    #[cfg(target_arch = "x86_64")]
    TiledAvx512,
    Matrixmultiply,
    Gemm,
    Faer,
}

impl Kernel {
    fn all() -> Vec<Kernel> {
        let mut all = vec![Kernel::Naive, Kernel::Tiled];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel::TiledAvx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Kernel::TiledAvx512);
            }
        }
        all.extend([Kernel::Matrixmultiply, Kernel::Gemm, Kernel::Faer]);
        all
    }

    fn name(self) -> &'static str {
        match self {
            Kernel::Naive => "naive",
            Kernel::Tiled => "tiled",
            #[cfg(target_arch = "x86_64")]
            Kernel::TiledAvx2 => "tiled avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::TiledAvx512 => "tiled avx512",
            Kernel::Matrixmultiply => "matrixmultiply",
            Kernel::Gemm => "gemm",
            Kernel::Faer => "faer",
        }
    }

    fn is_crate(self) -> bool {
        matches!(self, Kernel::Matrixmultiply | Kernel::Gemm | Kernel::Faer)
    }

    /// `c = a · b`, `c` row-major `a.rows × b.cols`; `scratch` is for packing.
    fn run(self, a: View<'_>, b: View<'_>, c: &mut [f32], scratch: &mut Vec<f32>) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        assert_eq!(b.rows, k);
        assert_eq!(c.len(), m * n);
        match self {
            Kernel::Naive => naive(a, b, c),
            Kernel::Tiled => tiled(a, b, c, scratch),
            #[cfg(target_arch = "x86_64")]
            Kernel::TiledAvx2 => {
                assert!(std::arch::is_x86_feature_detected!("avx2"));
                // SAFETY: the CPU has AVX2 (checked on the line above).
                unsafe { tiled_avx2(a, b, c, scratch) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::TiledAvx512 => {
                assert!(std::arch::is_x86_feature_detected!("avx512f"));
                // SAFETY: the CPU has AVX-512F (checked on the line above).
                unsafe { tiled_avx512(a, b, c, scratch) }
            }
            Kernel::Matrixmultiply => {
                // SAFETY: `View::new` checked that every element of `a` and `b` lies inside its
                // slice, and `c` holds exactly `m × n` elements at row stride `n`, column stride 1
                // (asserted above), which do not alias each other or the inputs (`c` is a unique
                // borrow). With beta = 0, `c` is written, never read.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.data.as_ptr(),
                        a.rs as isize,
                        a.cs as isize,
                        b.data.as_ptr(),
                        b.rs as isize,
                        b.cs as isize,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
            Kernel::Gemm => {
                // SAFETY: as for matrixmultiply: in-bounds strided inputs (checked by `View::new`)
                // and a unique, exactly sized, row-major output; with `read_dst = false`, `dst` is
                // only written (dst = beta · lhs · rhs, beta = 1).
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.data.as_ptr(),
                        a.cs as isize,
                        a.rs as isize,
                        b.data.as_ptr(),
                        b.cs as isize,
                        b.rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            Kernel::Faer => {
                // Safe, zero-copy views: faer checks the slice bounds itself.
                let dst = faer::MatMut::from_row_major_slice_mut(c, m, n);
                faer::linalg::matmul::matmul(
                    dst,
                    faer::Accum::Replace,
                    faer_view(a),
                    faer_view(b),
                    1.0f32,
                    faer::Par::Seq,
                );
            }
        }
    }
}

fn faer_view(v: View<'_>) -> faer::MatRef<'_, f32> {
    if v.cs == 1 {
        faer::MatRef::from_row_major_slice_with_stride(v.data, v.rows, v.cols, v.rs)
    } else if v.rs == 1 {
        faer::MatRef::from_column_major_slice_with_stride(v.data, v.rows, v.cols, v.cs)
    } else {
        panic!("faer's safe constructors need one unit stride (from_raw_parts takes any)")
    }
}

fn naive(a: View<'_>, b: View<'_>, c: &mut [f32]) {
    let n = b.cols;
    for i in 0..a.rows {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..a.cols {
                acc += a.at(i, p) * b.at(p, j);
            }
            c[i * n + j] = acc;
        }
    }
}

/// The f64 reference, for accuracy.
fn reference(a: View<'_>, b: View<'_>) -> Vec<f64> {
    let n = b.cols;
    let mut c = vec![0.0f64; a.rows * n];
    for i in 0..a.rows {
        for j in 0..n {
            c[i * n + j] = (0..a.cols)
                .map(|p| f64::from(a.at(i, p)) * f64::from(b.at(p, j)))
                .sum();
        }
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tiled_avx2(a: View<'_>, b: View<'_>, c: &mut [f32], scratch: &mut Vec<f32>) {
    tiled(a, b, c, scratch);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tiled_avx512(a: View<'_>, b: View<'_>, c: &mut [f32], scratch: &mut Vec<f32>) {
    tiled(a, b, c, scratch);
}

/// Register-tiled `c = a · b`. `b` must have contiguous rows; a transposed `b` is packed first
/// (a tiled transpose into `scratch`). Each output is summed over `k` in order from zero, as in
/// `naive`, so the result is bit-identical to it whatever the vector width.
#[inline(always)]
fn tiled(a: View<'_>, b: View<'_>, c: &mut [f32], scratch: &mut Vec<f32>) {
    let (k, n) = (b.rows, b.cols);
    if b.cs == 1 {
        tiles(a, b.data, b.rs, n, c);
    } else {
        scratch.clear();
        scratch.resize(k * n, 0.0);
        const T: usize = 16;
        for p0 in (0..k).step_by(T) {
            for j0 in (0..n).step_by(T) {
                for j in j0..(j0 + T).min(n) {
                    for p in p0..(p0 + T).min(k) {
                        scratch[p * n + j] = b.at(p, j);
                    }
                }
            }
        }
        tiles(a, scratch, n, n, c);
    }
}

#[inline(always)]
fn tiles(a: View<'_>, b: &[f32], ldb: usize, n: usize, c: &mut [f32]) {
    let m = a.rows;
    let mut i0 = 0;
    while i0 < m {
        if m - i0 >= 4 {
            tile_row::<4>(a, b, ldb, n, c, i0);
            i0 += 4;
        } else {
            tile_row::<1>(a, b, ldb, n, c, i0);
            i0 += 1;
        }
    }
}

#[inline(always)]
fn tile_row<const R: usize>(
    a: View<'_>,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    i0: usize,
) {
    let mut j0 = 0;
    while j0 < n {
        let left = n - j0;
        if left >= 16 {
            tile::<R, 16>(a, b, ldb, n, c, i0, j0);
            j0 += 16;
        } else if left >= 8 {
            tile::<R, 8>(a, b, ldb, n, c, i0, j0);
            j0 += 8;
        } else if left >= 4 {
            tile::<R, 4>(a, b, ldb, n, c, i0, j0);
            j0 += 4;
        } else {
            tile::<R, 1>(a, b, ldb, n, c, i0, j0);
            j0 += 1;
        }
    }
}

/// One `R × C` block of outputs, accumulated in registers over all of `k`.
#[inline(always)]
fn tile<const R: usize, const C: usize>(
    a: View<'_>,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    i0: usize,
    j0: usize,
) {
    let mut acc = [[0.0f32; C]; R];
    for p in 0..a.cols {
        let bp = &b[p * ldb + j0..][..C];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let ar = a.at(i0 + r, p);
            for (x, &bv) in acc_r.iter_mut().zip(bp) {
                *x += ar * bv;
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        c[(i0 + r) * n + j0..][..C].copy_from_slice(acc_r);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Product {
    Forward,
    Backward,
    WeightGrad,
}

impl Product {
    const ALL: [Product; 3] = [Product::Forward, Product::Backward, Product::WeightGrad];

    fn name(self) -> &'static str {
        match self {
            Product::Forward => "fwd Z=X·Wᵀ",
            Product::Backward => "bwd dX=dZ·W",
            Product::WeightGrad => "grad dW=dZᵀ·X",
        }
    }
}

/// One layer's operands: `x` (`64 × in`), `w` (`out × in`), `dz` (`64 × out`), all row-major.
struct Layer {
    net: &'static str,
    inp: usize,
    out: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    dz: Vec<f32>,
}

impl Layer {
    fn new(net: &'static str, inp: usize, out: usize, rng: &mut Rng) -> Self {
        let mut fill = |len: usize| (0..len).map(|_| rng.range(-1.0, 1.0)).collect::<Vec<f32>>();
        Layer {
            net,
            inp,
            out,
            x: fill(BATCH * inp),
            w: fill(out * inp),
            dz: fill(BATCH * out),
        }
    }

    /// The operands `(a, b)` of a product; the output is `a.rows × b.cols`.
    fn operands(&self, product: Product) -> (View<'_>, View<'_>) {
        let x = View::row_major(&self.x, BATCH, self.inp);
        let w = View::row_major(&self.w, self.out, self.inp);
        let dz = View::row_major(&self.dz, BATCH, self.out);
        match product {
            Product::Forward => (x, w.t()),
            Product::Backward => (dz, w),
            Product::WeightGrad => (dz.t(), x),
        }
    }
}

/// Median time of one call: calibrated so that a sample lasts at least 50 µs, at least 11
/// samples, then more until `budget` is spent.
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < 3 || start.elapsed() < Duration::from_millis(10) {
        f();
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / f64::from(calls);
    let reps = ((50e-6 / per_call).ceil() as usize).max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 11 || (start.elapsed() < budget && samples.len() < 2001) {
        let s = Instant::now();
        for _ in 0..reps {
            f();
        }
        samples.push(s.elapsed().as_secs_f64() * 1e9 / reps as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn bits(c: &[f32]) -> Vec<u32> {
    c.iter().map(|v| v.to_bits()).collect()
}

/// FNV-1a over the bits, to compare outputs across builds and machines.
fn digest(hash: &mut u64, c: &[f32]) {
    for v in c {
        for byte in v.to_bits().to_le_bytes() {
            *hash ^= u64::from(byte);
            *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn max_abs_diff(x: &[f32], y: &[f32]) -> f32 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() -> anyhow::Result<()> {
    let mut budget = Duration::from_millis(100);
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ms" => {
                let ms: u64 = args.next().unwrap_or_default().parse()?;
                budget = Duration::from_millis(ms);
            }
            "--rounds" => rounds = args.next().unwrap_or_default().parse::<usize>()?.max(1),
            _ => anyhow::bail!("usage: gemm [--ms MILLISECONDS_PER_MEASUREMENT] [--rounds N]"),
        }
    }

    let kernels = Kernel::all();
    let mut rng = Rng::new(0x6e6d_6d75);
    let layers: Vec<Layer> = LAYERS
        .iter()
        .map(|&(net, inp, out)| Layer::new(net, inp, out, &mut rng))
        .collect();

    println!("# Single-threaded f32 GEMM on MLP training shapes (batch {BATCH})\n");
    println!("- CPU: {}", cpu_model());
    #[cfg(target_arch = "x86_64")]
    println!(
        "- features: avx2 {}, fma {}, avx512f {}",
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("fma"),
        std::arch::is_x86_feature_detected!("avx512f"),
    );
    println!(
        "- threads: one per call (gemm `Parallelism::None`, faer `Par::Seq`, matrixmultiply without `threading`)"
    );
    println!(
        "- timing: {rounds} rounds × {} ms per measurement\n",
        budget.as_millis()
    );

    let cases: Vec<(&Layer, Product)> = layers
        .iter()
        .flat_map(|layer| Product::ALL.map(|product| (layer, product)))
        .collect();
    let mut scratch = Vec::new();

    // First pass: every case × kernel once, and the same call from two threads at once (no state
    // shared between calls may change the bits).
    let mut first: Vec<Vec<Vec<f32>>> = Vec::new(); // [case][kernel] -> output
    let mut thread_ok = vec![true; kernels.len()];
    for &(layer, product) in &cases {
        let (a, b) = layer.operands(product);
        let len = a.rows * b.cols;
        let mut outs = Vec::new();
        for (ki, &kernel) in kernels.iter().enumerate() {
            let mut c = vec![f32::NAN; len];
            kernel.run(a, b, &mut c, &mut scratch);
            let expected = bits(&c);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(move || {
                            let mut c = vec![f32::NAN; len];
                            let mut scratch = Vec::new();
                            for _ in 0..20 {
                                kernel.run(a, b, &mut c, &mut scratch);
                            }
                            bits(&c)
                        })
                    })
                    .collect();
                for h in handles {
                    thread_ok[ki] &= h.join().is_ok_and(|out| out == expected);
                }
            });
            outs.push(c);
        }
        first.push(outs);
    }

    // Timing rounds: all cases × kernels, `rounds` times over, so that the machine's slow spells
    // spread over all of them; a cell is the median over rounds of the per-round medians.
    let mut rounds_ns = vec![vec![Vec::new(); kernels.len()]; cases.len()];
    let mut repeat_ok = vec![true; kernels.len()];
    for _ in 0..rounds {
        for (ci, &(layer, product)) in cases.iter().enumerate() {
            let (a, b) = layer.operands(product);
            for (ki, &kernel) in kernels.iter().enumerate() {
                let mut c = vec![f32::NAN; a.rows * b.cols];
                let ns = time(budget, || {
                    kernel.run(black_box(a), black_box(b), &mut c, &mut scratch);
                    black_box(&mut c);
                });
                repeat_ok[ki] &= bits(&c) == bits(&first[ci][ki]);
                rounds_ns[ci][ki].push(ns);
            }
        }
    }
    // (median over rounds, best round, (slowest − fastest) / median)
    let cell = |ci: usize, ki: usize| -> (f64, f64, f64) {
        let mut v = rounds_ns[ci][ki].clone();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        (median, v[0], (v[v.len() - 1] - v[0]) / median)
    };

    print!("| net | layer | product | m×k×n |");
    for kernel in &kernels {
        print!(" {} |", kernel.name());
    }
    println!();
    print!("|---|---|---|---|");
    for _ in &kernels {
        print!("---:|");
    }
    println!();
    for (ci, &(layer, product)) in cases.iter().enumerate() {
        let (a, b) = layer.operands(product);
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let flops = 2.0 * (m * k * n) as f64;
        print!(
            "| {} | {}→{} | {} | {m}×{k}×{n} |",
            layer.net,
            layer.inp,
            layer.out,
            product.name()
        );
        for ki in 0..kernels.len() {
            print!(" {:.1} |", flops / cell(ci, ki).0);
        }
        println!();
    }
    println!(
        "\nGFLOP/s = 2·m·k·n / time of one call (median over {rounds} rounds of the median of samples).\n"
    );

    // Whole training steps: the three products of every layer of a network.
    println!(
        "## One training step, all layers, three products each (µs: sum of the cells' medians over rounds / of their best rounds)\n"
    );
    print!("| net |");
    for kernel in &kernels {
        print!(" {} |", kernel.name());
    }
    println!();
    print!("|---|");
    for _ in &kernels {
        print!("---:|");
    }
    println!();
    for net in ["digits", "mnist"] {
        print!("| {net} |");
        for ki in 0..kernels.len() {
            let total: (f64, f64) = cases
                .iter()
                .enumerate()
                .filter(|(_, (layer, _))| layer.net == net)
                .map(|(ci, _)| cell(ci, ki))
                .fold((0.0, 0.0), |(median, best), (m, b, _)| {
                    (median + m, best + b)
                });
            print!(" {:.0} / {:.0} |", total.0 / 1e3, total.1 / 1e3);
        }
        println!();
    }
    let worst_spread = |ki: usize| {
        (0..cases.len())
            .map(|ci| cell(ci, ki).2)
            .fold(0.0, f64::max)
    };

    // Accuracy and determinism.
    println!("\n## Checks\n");
    println!(
        "| kernel | same bits, repeated calls | same bits, other threads | bit-equal to naive (cases) | max abs diff vs naive f32 | max abs diff vs f64 | worst (max−min)/median over rounds | output digest |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---|");
    let naive_index = 0;
    let mut scale = 0.0f64;
    for (ki, kernel) in kernels.iter().enumerate() {
        let mut equal = 0;
        let mut vs_naive = 0.0f32;
        let mut vs_f64 = 0.0f64;
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut case = 0;
        for layer in &layers {
            for product in Product::ALL {
                let (a, b) = layer.operands(product);
                let exact = reference(a, b);
                let out = &first[case][ki];
                let naive_out = &first[case][naive_index];
                equal += usize::from(bits(out) == bits(naive_out));
                vs_naive = vs_naive.max(max_abs_diff(out, naive_out));
                for (&x, &e) in out.iter().zip(&exact) {
                    vs_f64 = vs_f64.max((f64::from(x) - e).abs());
                    scale = scale.max(e.abs());
                }
                digest(&mut hash, out);
                case += 1;
            }
        }
        println!(
            "| {} | {} | {} | {equal}/{case} | {vs_naive:.2e} | {vs_f64:.2e} | {:.0}% | `{hash:016x}` |",
            kernel.name(),
            if repeat_ok[ki] { "yes" } else { "NO" },
            if thread_ok[ki] { "yes" } else { "NO" },
            worst_spread(ki) * 100.0,
        );
    }
    println!("\nInputs uniform in [-1, 1); the largest |output| is {scale:.1}.\n");

    println!("Max abs difference between the crates (all cases):\n");
    let crates: Vec<usize> = (0..kernels.len())
        .filter(|&i| kernels[i].is_crate())
        .collect();
    print!("| |");
    for &j in &crates {
        print!(" {} |", kernels[j].name());
    }
    println!();
    print!("|---|");
    for _ in &crates {
        print!("---:|");
    }
    println!();
    for &i in &crates {
        print!("| {} |", kernels[i].name());
        for &j in &crates {
            let d = first
                .iter()
                .map(|outs| max_abs_diff(&outs[i], &outs[j]))
                .fold(0.0, f32::max);
            print!(" {d:.2e} |");
        }
        println!();
    }
    Ok(())
}
