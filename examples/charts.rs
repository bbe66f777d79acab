//! Draws PNG charts from benchmark and stress results.
//!
//! - `--interleaved FILE` reads the `--json` file of `benches/interleaved.rs`
//!   and draws throughput against threads (producers + consumers), one line
//!   per channel, the points at the median over rounds and a bar from the
//!   slowest to the fastest round: `interleaved_u64.png` and
//!   `interleaved_256B.png` (one per message type in the file).
//! - `--stress FILE` reads a `--report json` of the stress tool and draws its
//!   latency percentiles per priority on a log scale: `stress_latency.png`.
//!
//! Every chart names the machine and the date from its input. Text is drawn
//! with the DejaVu Sans font in `assets/fonts/` (compiled in), so no system
//! font library is needed.
//!
//! ```text
//! cargo bench --bench interleaved -- --rounds 5 --json /tmp/il.json
//! cargo run --release --example stress -- --duration 5 --report json --out /tmp/stress.json
//! cargo run --example charts -- --interleaved /tmp/il.json --stress /tmp/stress.json
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use serde::Deserialize;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The font every chart uses, registered as `sans-serif`.
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const WIDTH: u32 = 800;
const HEIGHT: u32 = 500;

#[derive(Parser)]
#[command(about = "PNG charts from interleaved-bench and stress-tool JSON files")]
struct Args {
    /// The `--json` file of `cargo bench --bench interleaved`.
    #[arg(long, value_name = "FILE")]
    interleaved: Option<PathBuf>,
    /// A `--report json` file of the stress example.
    #[arg(long, value_name = "FILE")]
    stress: Option<PathBuf>,
    /// Where the PNGs go (created if missing).
    #[arg(long, value_name = "DIR", default_value = "docs/charts")]
    out_dir: PathBuf,
}

// ---------------------------------------------------------------- inputs

#[derive(Deserialize)]
struct Interleaved {
    date_utc: String,
    nproc: usize,
    cpu: String,
    rounds: usize,
    messages: u64,
    capacity: usize,
    scenarios: Vec<Scenario>,
}

#[derive(Deserialize)]
struct Scenario {
    kind: String,
    producers: usize,
    consumers: usize,
    threads: usize,
    message: String,
    channels: Vec<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    channel: String,
    median: f64,
    min: f64,
    max: f64,
}

#[derive(Deserialize)]
struct Stress {
    config: StressConfig,
    messages_per_sec: f64,
    lanes: Vec<Lane>,
    /// Absent in reports written before it was added.
    #[serde(default)]
    taken: Option<Taken>,
}

#[derive(Deserialize)]
struct StressConfig {
    duration_secs: u64,
    producers: u32,
    consumers: u32,
    payload_size: usize,
    mode: String,
    interval_us: u64,
}

#[derive(Deserialize)]
struct Lane {
    priority: String,
    messages: u64,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

#[derive(Deserialize)]
struct Taken {
    date_utc: String,
    nproc: usize,
    cpu: String,
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

// ---------------------------------------------------------------- drawing

/// One colour per channel, lanebus first; unknown names get gray.
fn channel_color(name: &str) -> RGBColor {
    match name {
        "lanebus" => RGBColor(214, 39, 40),
        "crossbeam" => RGBColor(31, 119, 180),
        "kanal" => RGBColor(44, 160, 44),
        "flume" => RGBColor(255, 127, 14),
        "std" => RGBColor(127, 127, 127),
        _ => RGBColor(148, 103, 189),
    }
}

/// A white canvas with a title and a subtitle line; returns the area left
/// for the chart.
fn canvas<'a>(
    path: &'a Path,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(56);
    let centered = |size| {
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top))
    };
    let mid = WIDTH as i32 / 2;
    head.draw_text(title, &centered(20), (mid, 8))?;
    head.draw_text(subtitle, &centered(13), (mid, 34))?;
    Ok(body)
}

/// `throughput vs threads` for every message type in the file.
fn interleaved(data: &Interleaved, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut messages: Vec<&str> = Vec::new();
    for s in &data.scenarios {
        if !messages.contains(&s.message.as_str()) {
            messages.push(&s.message);
        }
    }
    let mut written = Vec::new();
    for message in messages {
        // One send/recv per message, the topology rows only (not batch or
        // the single-lane rows).
        let rows: Vec<&Scenario> = data
            .scenarios
            .iter()
            .filter(|s| s.message == message && ["spsc", "mpsc", "mpmc"].contains(&s.kind.as_str()))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let path = out_dir.join(format!("interleaved_{message}.png"));
        throughput_chart(data, message, &rows, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn throughput_chart(
    data: &Interleaved,
    message: &str,
    rows: &[&Scenario],
    path: &Path,
) -> Result<()> {
    let title = format!("Throughput vs threads, {message} messages (higher is better)");
    let subtitle = format!(
        "{}, nproc {}, {}; capacity {}; median of {} rounds of {} messages, bar = min-max",
        data.cpu,
        data.nproc,
        data.date_utc,
        data.capacity,
        data.rounds,
        grouped(data.messages)
    );
    let page = canvas(path, &title, &subtitle)?;
    // The legend gets its own column, so it never hides a line.
    let (body, legend) = page.split_horizontally(WIDTH - 120);

    let mut channels: Vec<&str> = Vec::new();
    for s in rows {
        for c in &s.channels {
            if !channels.contains(&c.channel.as_str()) {
                channels.push(&c.channel);
            }
        }
    }
    let top = rows
        .iter()
        .flat_map(|s| s.channels.iter().map(|c| c.max))
        .fold(0.0_f64, f64::max)
        * 1.15;
    let x_max = rows.iter().map(|s| s.threads).max().unwrap_or(8) as f64 + 0.5;
    let tick = |x: &f64| {
        rows.iter()
            .find(|s| (s.threads as f64 - x).abs() < 1e-9)
            .map_or_else(String::new, |s| {
                format!("{} ({}p{}c)", s.threads, s.producers, s.consumers)
            })
    };

    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .margin_right(8)
        .x_label_area_size(46)
        .y_label_area_size(50)
        .build_cartesian_2d(1.5..x_max, 0.0..top.max(1.0))?;
    chart
        .configure_mesh()
        .x_labels((x_max - 1.5) as usize + 1)
        .y_label_formatter(&|y: &f64| format!("{y:.0}"))
        .x_label_formatter(&tick)
        .x_desc("threads (producers + consumers)")
        .y_desc("M msg/s")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let n = channels.len();
    for (i, &name) in channels.iter().enumerate() {
        let color = channel_color(name);
        let width = if name == "lanebus" { 3 } else { 2 };
        // Each channel a little to the side, so the min-max bars of one
        // thread count do not hide each other.
        let dodge = (i as f64 - (n as f64 - 1.0) / 2.0) * 0.06;
        let points: Vec<(f64, &Channel)> = rows
            .iter()
            .filter_map(|s| {
                let c = s.channels.iter().find(|c| c.channel == name)?;
                Some((s.threads as f64 + dodge, c))
            })
            .collect();
        chart.draw_series(LineSeries::new(
            points.iter().map(|(x, c)| (*x, c.median)),
            color.stroke_width(width),
        ))?;
        let y = 20 + 24 * i as i32;
        legend.draw(&PathElement::new(
            vec![(4, y), (28, y)],
            color.stroke_width(width + 1),
        ))?;
        legend.draw(&Text::new(
            name,
            (34, y - 8),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))?;
        chart.draw_series(
            points
                .iter()
                .map(|(x, c)| Circle::new((*x, c.median), width + 2, color.filled())),
        )?;
        // min-max over the rounds
        chart.draw_series(points.iter().map(|(x, c)| {
            PathElement::new(
                vec![(*x, c.min), (*x, c.max)],
                color.mix(0.6).stroke_width(2),
            )
        }))?;
    }
    page.present()?;
    Ok(())
}

/// Latency percentiles per priority, log scale.
fn stress_chart(data: &Stress, path: &Path) -> Result<()> {
    let c = &data.config;
    let title = format!(
        "Stress latency per priority, {} mode (lower is better)",
        c.mode
    );
    let machine = data.taken.as_ref().map_or_else(
        || "machine and date not recorded".to_string(),
        |t| format!("{}, nproc {}, {}", t.cpu, t.nproc, t.date_utc),
    );
    let pacing = if c.interval_us == 0 {
        "saturated".to_string()
    } else {
        format!("1 send/{} µs per producer", c.interval_us)
    };
    let subtitle = format!(
        "{machine}; {}p/{}w, {} B payload, {} s {pacing}, {:.2} M msg/s",
        c.producers,
        c.consumers,
        c.payload_size,
        c.duration_secs,
        data.messages_per_sec / 1e6
    );
    let body = canvas(path, &title, &subtitle)?;

    const PERCENTILES: [&str; 5] = ["p50", "p95", "p99", "p99.9", "max"];
    let lanes: Vec<(&Lane, [f64; 5])> = data
        .lanes
        .iter()
        .filter(|l| l.messages > 0)
        .map(|l| (l, [l.p50_us, l.p95_us, l.p99_us, l.p999_us, l.max_us]))
        .collect();
    let idle: Vec<&str> = data
        .lanes
        .iter()
        .filter(|l| l.messages == 0)
        .map(|l| l.priority.as_str())
        .collect();
    let values = lanes.iter().flat_map(|(_, v)| v.iter().copied());
    let lo = values.clone().fold(f64::INFINITY, f64::min).max(0.01);
    let hi = values.fold(0.0_f64, f64::max).max(lo * 10.0);
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    );

    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..4.5, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-9 && (0.0..5.0).contains(&i) {
                PERCENTILES[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y: &f64| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y}")
            }
        })
        .x_desc("percentile of send-to-receive latency")
        .y_desc("µs (log scale)")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;

    let palette = [
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(31, 119, 180),
        RGBColor(127, 127, 127),
    ];
    for (i, (lane, v)) in lanes.iter().enumerate() {
        let color = palette[i % palette.len()];
        let points: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(x, y)| (x as f64, y.max(lo)))
            .collect();
        let label = format!("{} ({} msgs)", lane.priority, grouped(lane.messages));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    if !idle.is_empty() {
        // A legend-like note for the priorities the mix never sent.
        chart.draw_series(std::iter::once(Text::new(
            format!("no messages: {}", idle.join(", ")),
            (3.6, lo * 1.5),
            ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    body.present()?;
    Ok(())
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.interleaved.is_none() && args.stress.is_none() {
        return Err("nothing to draw: pass --interleaved FILE and/or --stress FILE".into());
    }
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the bundled font does not parse")?;
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.out_dir.display()))?;
    let mut written = Vec::new();
    if let Some(path) = &args.interleaved {
        written.extend(interleaved(&read(path)?, &args.out_dir)?);
    }
    if let Some(path) = &args.stress {
        let out = args.out_dir.join("stress_latency.png");
        stress_chart(&read(path)?, &out)?;
        written.push(out);
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
