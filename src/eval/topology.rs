//! The routing topology (spec section 9): every country's routing signature (its mean gate
//! vectors, from `cuma eval --routing`) projected to 2-D with exact t-SNE or PCA, drawn as a PNG
//! with one colour per cultural cluster and the country's code beside its point.

use crate::sampling::Rng;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// How to project signatures to 2-D.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Projection {
    /// Exact t-SNE (van der Maaten & Hinton 2008) with this perplexity, 1000 iterations.
    Tsne { perplexity: f64, seed: u64 },
    /// The first two principal components.
    Pca,
}

fn squared_distances(x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|a| {
            x.iter()
                .map(|b| a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum())
                .collect()
        })
        .collect()
}

/// The perplexity t-SNE can use on `n` points: at most (n - 1) / 3.
pub fn usable_perplexity(perplexity: f64, n: usize) -> f64 {
    perplexity.min((n.saturating_sub(1) as f64 / 3.0).max(1.0))
}

/// Conditional affinities p(j|i) whose entropy is ln(perplexity), found by bisection on the
/// Gaussian's precision, then symmetrised: p_ij = (p(j|i) + p(i|j)) / 2n.
fn affinities(d: &[Vec<f64>], perplexity: f64) -> Vec<Vec<f64>> {
    let n = d.len();
    let target = perplexity.ln();
    let mut p = vec![vec![0.0; n]; n];
    for i in 0..n {
        let (mut beta, mut lo, mut hi) = (1.0, 0.0, f64::INFINITY);
        // Distances relative to the nearest neighbour keep exp() in range.
        let dmin = (0..n)
            .filter(|&j| j != i)
            .map(|j| d[i][j])
            .fold(f64::INFINITY, f64::min);
        for _ in 0..100 {
            let mut sum = 0.0;
            let mut weighted = 0.0;
            for j in (0..n).filter(|&j| j != i) {
                let w = (-(d[i][j] - dmin) * beta).exp();
                p[i][j] = w;
                sum += w;
                weighted += w * (d[i][j] - dmin);
            }
            let entropy = sum.ln() + beta * weighted / sum;
            p[i].iter_mut().for_each(|x| *x /= sum);
            if (entropy - target).abs() < 1e-6 {
                break;
            }
            if entropy > target {
                lo = beta;
                beta = if hi.is_finite() { (beta + hi) / 2.0 } else { beta * 2.0 };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
        }
    }
    let mut sym = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            sym[i][j] = ((p[i][j] + p[j][i]) / (2.0 * n as f64)).max(1e-12);
        }
    }
    sym
}

/// Exact t-SNE to 2-D: early exaggeration 12 for 250 iterations, momentum 0.5 then 0.8,
/// learning rate 100 with per-coordinate gains.
pub fn tsne(x: &[Vec<f64>], perplexity: f64, seed: u64) -> Vec<[f64; 2]> {
    let n = x.len();
    if n < 3 {
        return pca(x);
    }
    let p = affinities(&squared_distances(x), usable_perplexity(perplexity, n));
    let mut rng = Rng::new(seed);
    let mut normal = || {
        let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let mut y: Vec<[f64; 2]> = (0..n).map(|_| [1e-4 * normal(), 1e-4 * normal()]).collect();
    let mut velocity = vec![[0.0; 2]; n];
    let mut gains = vec![[1.0; 2]; n];
    for iter in 0..1000 {
        let exaggeration = if iter < 250 { 12.0 } else { 1.0 };
        let momentum = if iter < 250 { 0.5 } else { 0.8 };
        let mut num = vec![vec![0.0; n]; n];
        let mut z = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let q = 1.0 / (1.0 + (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2));
                num[i][j] = q;
                num[j][i] = q;
                z += 2.0 * q;
            }
        }
        for i in 0..n {
            let mut grad = [0.0; 2];
            for j in (0..n).filter(|&j| j != i) {
                let coeff = 4.0 * (exaggeration * p[i][j] - num[i][j] / z) * num[i][j];
                grad[0] += coeff * (y[i][0] - y[j][0]);
                grad[1] += coeff * (y[i][1] - y[j][1]);
            }
            for c in 0..2 {
                gains[i][c] = if (grad[c] > 0.0) == (velocity[i][c] > 0.0) {
                    (gains[i][c] * 0.8f64).max(0.01)
                } else {
                    gains[i][c] + 0.2
                };
                velocity[i][c] = momentum * velocity[i][c] - 100.0 * gains[i][c] * grad[c];
            }
        }
        for (yi, vi) in y.iter_mut().zip(&velocity) {
            yi[0] += vi[0];
            yi[1] += vi[1];
        }
        let mean = y
            .iter()
            .fold([0.0; 2], |m, yi| [m[0] + yi[0] / n as f64, m[1] + yi[1] / n as f64]);
        y.iter_mut().for_each(|yi| *yi = [yi[0] - mean[0], yi[1] - mean[1]]);
    }
    y
}

/// The first two principal components (scores), from the centred Gram matrix by power
/// iteration with deflation; each axis's sign makes its largest score positive.
pub fn pca(x: &[Vec<f64>]) -> Vec<[f64; 2]> {
    let n = x.len();
    let dim = x.first().map_or(0, Vec::len);
    let mean: Vec<f64> = (0..dim)
        .map(|c| x.iter().map(|r| r[c]).sum::<f64>() / n.max(1) as f64)
        .collect();
    let centred: Vec<Vec<f64>> = x
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(a, m)| a - m).collect())
        .collect();
    let mut gram: Vec<Vec<f64>> = centred
        .iter()
        .map(|a| {
            centred
                .iter()
                .map(|b| a.iter().zip(b).map(|(u, v)| u * v).sum())
                .collect()
        })
        .collect();
    let mut out = vec![[0.0; 2]; n];
    for axis in 0..2 {
        let mut v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.618).fract()).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = gram
                .iter()
                .map(|row| row.iter().zip(&v).map(|(g, x)| g * x).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-300 {
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        let biggest = v
            .iter()
            .copied()
            .fold(0.0, |b: f64, x| if x.abs() > b.abs() { x } else { b });
        let sign = if biggest < 0.0 { -1.0 } else { 1.0 };
        for (o, vi) in out.iter_mut().zip(&v) {
            o[axis] = sign * vi * lambda.sqrt();
        }
        for (row, vi) in gram.iter_mut().zip(&v) {
            for (g, vj) in row.iter_mut().zip(&v) {
                *g -= lambda * vi * vj;
            }
        }
    }
    out
}

/// Projects `signatures` with `projection`.
pub fn project(signatures: &[Vec<f64>], projection: Projection) -> Vec<[f64; 2]> {
    match projection {
        Projection::Tsne { perplexity, seed } => tsne(signatures, perplexity, seed),
        Projection::Pca => pca(signatures),
    }
}

/// One country on the picture.
pub struct Point {
    pub label: String,
    pub cluster: String,
    pub xy: [f64; 2],
}

/// Ten well separated colours (the Tableau 10 palette).
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Where TrueType fonts usually live on Linux and macOS.
const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
];

/// The font to draw text with: `explicit`, else `$CUMA_FONT`, else a common system font.
pub fn find_font(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("CUMA_FONT") {
        return Ok(PathBuf::from(p));
    }
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no TrueType font found (looked for {}); pass --font <file.ttf> or set CUMA_FONT",
                FONT_CANDIDATES.join(", ")
            ))
        })
}

/// Makes `font` plotters' "sans-serif" (for the rest of the process: plotters keeps registered
/// fonts, so the bytes are leaked once per call).
pub fn use_font(font: &Path) -> Result<()> {
    let bytes = std::fs::read(font).map_err(crate::error::io(font))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
        .map_err(|_| Error::Invalid(format!("{}: not a TrueType font plotters can read", font.display())))
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing the topology: {e}"))
}

/// Draws `points` into a PNG at `out`: one colour per cluster (legend), labels beside points.
pub fn draw(points: &[Point], title: &str, font: &Path, out: &Path) -> Result<()> {
    use plotters::prelude::*;
    use_font(font)?;
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in points {
        for c in 0..2 {
            lo[c] = lo[c].min(p.xy[c]);
            hi[c] = hi[c].max(p.xy[c]);
        }
    }
    let pad = |c: usize| ((hi[c] - lo[c]) * 0.08).max(1e-6);
    let root = BitMapBackend::new(out, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(lo[0] - pad(0)..hi[0] + pad(0), lo[1] - pad(1)..hi[1] + pad(1))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;
    let mut clusters: Vec<&str> = points.iter().map(|p| p.cluster.as_str()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    for (ci, cluster) in clusters.iter().enumerate() {
        let (r, g, b) = PALETTE[ci % PALETTE.len()];
        let colour = RGBColor(r, g, b);
        let members: Vec<&Point> = points.iter().filter(|p| p.cluster == *cluster).collect();
        chart
            .draw_series(members.iter().map(|p| {
                EmptyElement::at((p.xy[0], p.xy[1]))
                    + Circle::new((0, 0), 7, colour.filled())
                    + Text::new(p.label.clone(), (10, -7), ("sans-serif", 15).into_font().color(&colour))
            }))
            .map_err(plot_err)?
            .label(cluster.to_string())
            .legend(move |(x, y)| Circle::new((x + 8, y), 6, colour.filled()));
    }
    legend_and_save(&mut chart, &root, plot_err)
}

/// A 2-D f64 chart on a PNG, as both of cuma's pictures draw them.
pub(super) type PngChart<'a> = plotters::chart::ChartContext<
    'a,
    plotters::prelude::BitMapBackend<'a>,
    plotters::prelude::Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws the legend (upper right) of `chart` and writes `root` to its file.
pub(super) fn legend_and_save(
    chart: &mut PngChart<'_>,
    root: &plotters::prelude::DrawingArea<plotters::prelude::BitMapBackend<'_>, plotters::coord::Shift>,
    err: fn(String) -> Error,
) -> Result<()> {
    use plotters::prelude::*;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 17))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tight groups far apart, in 6 dimensions.
    fn two_groups() -> Vec<Vec<f64>> {
        let mut rng = Rng::new(3);
        (0..20)
            .map(|i| {
                (0..6)
                    .map(|_| if i < 10 { 0.0 } else { 5.0 } + 0.1 * rng.next_f64())
                    .collect()
            })
            .collect()
    }

    fn nearest_is_same_group(y: &[[f64; 2]]) -> bool {
        (0..y.len()).all(|i| {
            let nearest = (0..y.len()).filter(|&j| j != i).min_by(|&a, &b| {
                let d = |j: usize| (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2);
                d(a).total_cmp(&d(b))
            });
            nearest.is_some_and(|j| (j < 10) == (i < 10))
        })
    }

    #[test]
    fn pca_recovers_a_line() {
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![i as f64, 2.0 * i as f64, 7.0]).collect();
        let y = pca(&x);
        // Distances along the line are kept; the second component is empty.
        assert!(
            (y[4][0] - y[0][0]).abs() - 4.0 * 5f64.sqrt() < 1e-9
                && (y[4][0] - y[0][0]).abs() > 4.0 * 5f64.sqrt() - 1e-9
        );
        assert!(y.iter().all(|p| p[1].abs() < 1e-6));
        assert!(nearest_is_same_group(&pca(&two_groups())));
    }

    #[test]
    fn tsne_keeps_groups_apart_and_is_deterministic() {
        let x = two_groups();
        let y = tsne(&x, 30.0, 7);
        assert!(nearest_is_same_group(&y));
        assert_eq!(y, tsne(&x, 30.0, 7));
        assert_eq!(usable_perplexity(30.0, 66), 30.0_f64.min(65.0 / 3.0));
    }

    #[test]
    fn draws_a_png() {
        let font = find_font(None).expect("a system font (install fonts-dejavu-core, or set CUMA_FONT)");
        let dir = std::env::temp_dir().join(format!("cuma-topology-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("t.png");
        let points: Vec<Point> = [
            ("JPN", "Confucian", [0.0, 1.0]),
            ("CHL", "Latin America", [1.0, 0.0]),
            ("KOR", "Confucian", [0.1, 0.9]),
        ]
        .into_iter()
        .map(|(l, c, xy)| Point {
            label: l.into(),
            cluster: c.into(),
            xy,
        })
        .collect();
        draw(&points, "test", &font, &out).expect("draws");
        let png = std::fs::read(&out).expect("written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 5000,
            "a {} byte PNG is too small to hold the picture",
            png.len()
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
