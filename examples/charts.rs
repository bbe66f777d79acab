//! Draws PNG charts from benchmark and stress results.
//!
//! - `--interleaved FILE` reads the `--json` file of `benches/interleaved.rs`
//!   and draws throughput against threads (producers + consumers), one line
//!   per channel, the points at the median over rounds and a bar from the
//!   slowest to the fastest round: `interleaved_u64.png` and
//!   `interleaved_256B.png` (one per message type in the file).
//! - `--stress FILE` reads a `--report json` of the stress tool and draws its
//!   latency percentiles per priority on a log scale: `stress_latency.png`.
//! - `--latency FILE` reads the `--json` file of `benches/latency.rs` and
//!   draws each scenario's percentiles per channel: `latency_<scenario>.png`.
//! - `--criterion DIR` reads criterion's results (`target/criterion`) and
//!   draws what it finds of: the pool's throughput against its worker count
//!   (`pool_scaling_<cost>.png`, from `benches/pool.rs`), SPSC throughput
//!   against batch size (`batch_sweep.png`) and published messages against
//!   subscribers (`fanout.png`, both from `benches/sweeps.rs`). Criterion
//!   records no machine: the subtitle names the machine drawing the chart
//!   and the time of the newest result file.
//!
//! Every chart names the machine and the date from its input. Text is drawn
//! with the DejaVu Sans font in `assets/fonts/` (compiled in), so no system
//! font library is needed.
//!
//! ```text
//! cargo bench --bench interleaved -- --rounds 5 --json /tmp/il.json
//! cargo run --release --example stress -- --duration 5 --report json --out /tmp/stress.json
//! cargo run --example charts -- --interleaved /tmp/il.json --stress /tmp/stress.json
//! cargo bench --bench latency -- --json /tmp/lat.json
//! cargo bench --bench sweeps && cargo bench --bench pool -- pool_scaling
//! cargo run --example charts -- --latency /tmp/lat.json --criterion target/criterion
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
#[command(about = "PNG charts from bench results and stress-tool JSON files")]
struct Args {
    /// The `--json` file of `cargo bench --bench interleaved`.
    #[arg(long, value_name = "FILE")]
    interleaved: Option<PathBuf>,
    /// A `--report json` file of the stress example.
    #[arg(long, value_name = "FILE")]
    stress: Option<PathBuf>,
    /// A criterion output directory (`target/criterion`): the pool's
    /// scaling, the batch-size sweep and the fan-out groups found there.
    #[arg(long, value_name = "DIR")]
    criterion: Option<PathBuf>,
    /// The `--json` file of `cargo bench --bench latency`.
    #[arg(long, value_name = "FILE")]
    latency: Option<PathBuf>,
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

#[derive(Deserialize)]
struct Latency {
    date_utc: String,
    nproc: usize,
    cpu: String,
    rounds: usize,
    samples: u64,
    scenarios: Vec<LatencyScenario>,
}

#[derive(Deserialize)]
struct LatencyScenario {
    scenario: String,
    channels: Vec<LatencyChannel>,
}

#[derive(Deserialize)]
struct LatencyChannel {
    channel: String,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// One criterion benchmark: its id and median throughput.
struct Bench {
    group: String,
    function: String,
    value: String,
    /// Messages per second (criterion's median time per iteration and the
    /// benchmark's `Throughput::Elements`).
    per_sec: f64,
}

/// Every benchmark under `root` that declared a throughput in elements.
fn read_criterion(root: &Path) -> Result<Vec<Bench>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    if let Some(bench) = read_bench(&path)? {
                        found.push(bench);
                    }
                } else {
                    dirs.push(path);
                }
            }
        }
    }
    if found.is_empty() {
        return Err(format!(
            "no criterion results with a throughput under {}",
            root.display()
        )
        .into());
    }
    Ok(found)
}

/// `DIR/benchmark.json` and `DIR/estimates.json` of one benchmark's `new`
/// directory; `None` without a throughput in elements.
fn read_bench(dir: &Path) -> Result<Option<Bench>> {
    let bench: serde_json::Value = read(&dir.join("benchmark.json"))?;
    let estimates: serde_json::Value = read(&dir.join("estimates.json"))?;
    let throughput = &bench["throughput"];
    let elements = throughput["Elements"]
        .as_u64()
        .or_else(|| throughput["ElementsAndBytes"]["elements"].as_u64());
    let median_ns = estimates["median"]["point_estimate"].as_f64();
    let (Some(elements), Some(ns)) = (elements, median_ns) else {
        return Ok(None);
    };
    let text = |key: &str| bench[key].as_str().unwrap_or_default().to_string();
    Ok(Some(Bench {
        group: text("group_id"),
        function: text("function_id"),
        value: text("value_str"),
        per_sec: elements as f64 / ns * 1e9,
    }))
}

/// The leading number of `1w_2thr`, `20w`, `2thr`, `8s`.
fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
        "disruptor" => RGBColor(140, 86, 75),
        "tokio" | "tokio_broadcast" => RGBColor(23, 190, 207),
        "lanebus_publisher" => RGBColor(247, 129, 191),
        "lanebus_n" => RGBColor(188, 189, 34),
        "crossbeam_n" => RGBColor(31, 119, 180),
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
    let palette = [
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(31, 119, 180),
        RGBColor(127, 127, 127),
    ];
    let series: Vec<Series> = data
        .lanes
        .iter()
        .filter(|l| l.messages > 0)
        .enumerate()
        .map(|(i, l)| Series {
            label: format!("{} ({} msgs)", l.priority, grouped(l.messages)),
            color: palette[i % palette.len()],
            width: 2,
            points: [l.p50_us, l.p95_us, l.p99_us, l.p999_us, l.max_us]
                .into_iter()
                .enumerate()
                .map(|(x, y)| (x as f64, y))
                .collect(),
        })
        .collect();
    let idle: Vec<&str> = data
        .lanes
        .iter()
        .filter(|l| l.messages == 0)
        .map(|l| l.priority.as_str())
        .collect();
    let note = (!idle.is_empty()).then(|| format!("no messages: {}", idle.join(", ")));
    percentile_chart(
        path,
        &title,
        &subtitle,
        &["p50", "p95", "p99", "p99.9", "max"],
        "percentile of send-to-receive latency",
        "µs (log scale)",
        &series,
        note.as_deref(),
    )
}

/// One line of a chart: its legend label and its points.
struct Series {
    label: String,
    color: RGBColor,
    width: u32,
    points: Vec<(f64, f64)>,
}

/// Percentiles (the x axis, named by `names`) against a log-scale value,
/// one line per series, the legend in the upper left.
#[allow(clippy::too_many_arguments)]
fn percentile_chart(
    path: &Path,
    title: &str,
    subtitle: &str,
    names: &[&str],
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    note: Option<&str>,
) -> Result<()> {
    let body = canvas(path, title, subtitle)?;
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let lo = values.clone().fold(f64::INFINITY, f64::min).max(0.01);
    let hi = values.fold(0.0_f64, f64::max).max(lo * 10.0);
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    );
    let last = names.len() as f64 - 0.5;

    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..last, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].to_string()
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
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;

    for s in series {
        let color = s.color;
        let width = s.width;
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, y.max(lo))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        chart.draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, width + 2, color.filled())),
        )?;
    }
    if let Some(note) = note {
        chart.draw_series(std::iter::once(Text::new(
            note.to_string(),
            (last - 1.4, lo * 1.5),
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

/// Lines over a categorical x axis (`ticks`: position and label), a linear
/// y axis from 0, the legend in a column of its own on the right.
fn line_chart(
    path: &Path,
    title: &str,
    subtitle: &str,
    x_desc: &str,
    y_desc: &str,
    ticks: &[(f64, String)],
    series: &[Series],
) -> Result<()> {
    let page = canvas(path, title, subtitle)?;
    let (body, legend) = page.split_horizontally(WIDTH - 170);
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        * 1.15;
    let x_lo = ticks.iter().map(|t| t.0).fold(f64::INFINITY, f64::min) - 0.5;
    let x_hi = ticks.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max) + 0.5;
    let label_of = |x: &f64| {
        ticks
            .iter()
            .find(|t| (t.0 - x).abs() < 1e-9)
            .map_or_else(String::new, |t| t.1.clone())
    };
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .margin_right(8)
        .x_label_area_size(46)
        .y_label_area_size(56)
        .build_cartesian_2d(x_lo..x_hi, 0.0..top.max(1.0))?;
    chart
        .configure_mesh()
        .x_labels(((x_hi - x_lo) as usize).max(1) + 1)
        .x_label_formatter(&label_of)
        .y_label_formatter(&|y: &f64| {
            if top >= 10.0 {
                format!("{y:.0}")
            } else if top >= 1.0 {
                format!("{y:.1}")
            } else {
                format!("{y:.2}")
            }
        })
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = s.color;
        chart.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(s.width),
        ))?;
        chart.draw_series(
            s.points
                .iter()
                .map(|&p| Circle::new(p, s.width + 2, color.filled())),
        )?;
        let y = 20 + 24 * i as i32;
        legend.draw(&PathElement::new(
            vec![(4, y), (28, y)],
            color.stroke_width(s.width + 1),
        ))?;
        legend.draw(&Text::new(
            s.label.as_str(),
            (34, y - 8),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))?;
    }
    page.present()?;
    Ok(())
}

/// One percentile chart per scenario of the latency bench.
fn latency_charts(data: &Latency, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for scenario in &data.scenarios {
        let name: String = scenario
            .scenario
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = out_dir.join(format!("latency_{name}.png"));
        let title = format!("Latency, {} (lower is better)", scenario.scenario);
        let subtitle = format!(
            "{}, nproc {}, {}; median of {} rounds of {} samples per percentile",
            data.cpu,
            data.nproc,
            data.date_utc,
            data.rounds,
            grouped(data.samples)
        );
        let series: Vec<Series> = scenario
            .channels
            .iter()
            .map(|c| Series {
                label: c.channel.clone(),
                color: channel_color(&c.channel),
                width: if c.channel.starts_with("lanebus") {
                    3
                } else {
                    2
                },
                points: [c.p50, c.p90, c.p99, c.p999, c.max]
                    .into_iter()
                    .enumerate()
                    .map(|(x, ns)| (x as f64, ns / 1e3))
                    .collect(),
            })
            .collect();
        percentile_chart(
            &path,
            &title,
            &subtitle,
            &["p50", "p90", "p99", "p99.9", "max"],
            "percentile",
            "µs (log scale)",
            &series,
            None,
        )?;
        written.push(path);
    }
    Ok(written)
}

/// Where and when criterion results were measured: the machine drawing the
/// chart (criterion records none) and the newest result file's time.
fn criterion_subtitle(root: &Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".to_string());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let newest = newest_mtime(root)
        .map(|t| {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            utc_date(secs)
        })
        .unwrap_or_else(|| "date unknown".to_string());
    format!("{cpu}, nproc {nproc}; criterion medians, results of {newest}")
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (civil-from-days, proleptic
/// Gregorian).
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Moves series whose x values are plain numbers (worker counts, batch
/// sizes) onto one evenly spaced categorical axis: the ticks are the union
/// of every series' x values, in order. Empty series are left out.
fn categorical(lines: Vec<Series>) -> (Vec<(f64, String)>, Vec<Series>) {
    let mut xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let at = |x: f64| xs.iter().position(|&v| v == x).unwrap_or(0) as f64;
    let ticks = xs.iter().map(|&x| (at(x), format!("{x}"))).collect();
    let series = lines
        .into_iter()
        .filter(|l| !l.points.is_empty())
        .map(|mut l| {
            l.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            l.points = l.points.into_iter().map(|(x, y)| (at(x), y)).collect();
            l
        })
        .collect();
    (ticks, series)
}

/// The pool's throughput against its worker count, one chart per handler
/// cost (`pool_scaling_<cost>` groups of `benches/pool.rs`).
fn pool_charts(benches: &[Bench], subtitle: &str, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut groups: Vec<&str> = benches
        .iter()
        .filter(|b| b.group.starts_with("pool_scaling_"))
        .map(|b| b.group.as_str())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let mut written = Vec::new();
    for group in groups {
        let cost = group.trim_start_matches("pool_scaling_");
        let line = |label: &str, color, width, function: &str| Series {
            label: label.to_string(),
            color,
            width,
            points: benches
                .iter()
                .filter(|b| b.group == group && b.function == function)
                .filter_map(|b| Some((f64::from(leading_number(&b.value)?), b.per_sec / 1e6)))
                .collect(),
        };
        let (ticks, series) = categorical(vec![
            line("pool, pre-filled", RGBColor(214, 39, 40), 3, "prefilled"),
            line("pool, live feed", RGBColor(255, 127, 14), 2, "live"),
            line("no pool (threads)", RGBColor(127, 127, 127), 2, "ideal"),
        ]);
        let path = out_dir.join(format!("{group}.png"));
        line_chart(
            &path,
            &format!("Worker pool throughput vs workers, {cost} handler"),
            subtitle,
            "workers (live feed: + 1 producer thread)",
            "M msg/s",
            &ticks,
            &series,
        )?;
        written.push(path);
    }
    Ok(written)
}

/// One line per peer (the benchmark's function id) of the criterion group
/// `group`, against the leading number of each benchmark's parameter (the
/// batch size of `batch_sweep`, the subscriber count of `fanout`).
fn peer_chart(
    benches: &[Bench],
    group: &str,
    labels: ChartLabels<'_>,
    path: &Path,
) -> Result<Option<PathBuf>> {
    let mut peers: Vec<&str> = Vec::new();
    for b in benches.iter().filter(|b| b.group == group) {
        if !peers.contains(&b.function.as_str()) {
            peers.push(&b.function);
        }
    }
    if peers.is_empty() {
        return Ok(None);
    }
    // lanebus first, then the peers in a stable order.
    peers.sort_by_key(|p| (!p.starts_with("lanebus"), *p));
    let lines = peers
        .iter()
        .map(|&peer| Series {
            label: peer.to_string(),
            color: channel_color(peer),
            width: if peer.starts_with("lanebus") { 3 } else { 2 },
            points: benches
                .iter()
                .filter(|b| b.group == group && b.function == peer)
                .filter_map(|b| Some((f64::from(leading_number(&b.value)?), b.per_sec / 1e6)))
                .collect(),
        })
        .collect();
    let (ticks, series) = categorical(lines);
    line_chart(
        path,
        labels.title,
        labels.subtitle,
        labels.x_desc,
        labels.y_desc,
        &ticks,
        &series,
    )?;
    Ok(Some(path.to_path_buf()))
}

/// The text around a chart.
struct ChartLabels<'a> {
    title: &'a str,
    subtitle: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
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
    if args.interleaved.is_none()
        && args.stress.is_none()
        && args.criterion.is_none()
        && args.latency.is_none()
    {
        return Err(
            "nothing to draw: pass --interleaved FILE, --stress FILE, --latency FILE and/or --criterion DIR"
                .into(),
        );
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
    if let Some(path) = &args.latency {
        written.extend(latency_charts(&read(path)?, &args.out_dir)?);
    }
    if let Some(root) = &args.criterion {
        let benches = read_criterion(root)?;
        let subtitle = criterion_subtitle(root);
        written.extend(pool_charts(&benches, &subtitle, &args.out_dir)?);
        let batch = ChartLabels {
            title: "SPSC u64 throughput vs batch size (higher is better)",
            subtitle: &subtitle,
            x_desc: "messages per send_batch / recv_batch (per publish for the disruptor)",
            y_desc: "M msg/s",
        };
        let path = args.out_dir.join("batch_sweep.png");
        written.extend(peer_chart(&benches, "batch_sweep", batch, &path)?);
        let fanout = ChartLabels {
            title: "Fan-out: 64 B messages published vs subscribers (higher is better)",
            subtitle: &subtitle,
            x_desc: "subscriber threads (+ 1 publisher)",
            y_desc: "M msg/s published",
        };
        let path = args.out_dir.join("fanout.png");
        written.extend(peer_chart(&benches, "fanout", fanout, &path)?);
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
