//! The review page's plots, drawn as inline SVG by plotters from the `pipeline/review/*.sql`
//! summaries. No data is computed here beyond stacking the numbers the SQL returns.

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

type Rows = BTreeMap<String, Vec<Map<String, Value>>>;

/// One plot: its SVG and the legend shown beside it.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub svg: String,
    pub legend: Vec<LegendEntry>,
}

#[derive(Debug, Serialize)]
pub struct LegendEntry {
    pub label: String,
    pub color: String,
}

/// One series of a plot: a label, a colour and one value per category.
struct Series {
    label: String,
    color: RGBColor,
    values: Vec<f64>,
    /// Lines only: drawn thin with markers (the current database) rather than thick.
    thin: bool,
}

const WIDTH: u32 = 1000;
const FONT: &str = "sans-serif";

const GREEN: RGBColor = RGBColor(0x2e, 0x7d, 0x32);
const LIGHT_GREEN: RGBColor = RGBColor(0x8b, 0xc3, 0x4a);
const GREY: RGBColor = RGBColor(0x9e, 0x9e, 0x9e);
const RED: RGBColor = RGBColor(0xc6, 0x28, 0x28);
const BLUE: RGBColor = RGBColor(0x15, 0x65, 0xc0);
const ORANGE: RGBColor = RGBColor(0xef, 0x6c, 0x00);
const PURPLE: RGBColor = RGBColor(0x6a, 0x1b, 0x9a);
const TEAL: RGBColor = RGBColor(0x00, 0x83, 0x8f);
const BROWN: RGBColor = RGBColor(0x79, 0x55, 0x48);
const PINK: RGBColor = RGBColor(0xd8, 0x1b, 0x60);
const LIGHT_BLUE: RGBColor = RGBColor(0x64, 0xb5, 0xf6);
const LIGHT_ORANGE: RGBColor = RGBColor(0xff, 0xb7, 0x4d);
const PALETTE: [RGBColor; 8] = [RED, ORANGE, PURPLE, TEAL, BROWN, PINK, BLUE, GREY];

fn hex(c: &RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn rows<'a>(all: &'a Rows, name: &str) -> Result<&'a [Map<String, Value>]> {
    all.get(name)
        .map(|r| r.as_slice())
        .ok_or_else(|| anyhow!("pipeline/review has no file that produces `{name}`"))
}

/// Every plot of the page, by name.
pub fn all(summaries: &Rows, timezone: &str) -> Result<BTreeMap<String, Chart>> {
    let mut out = BTreeMap::new();
    out.insert(
        "source_flow".into(),
        source_flow(rows(summaries, "source_flow")?)?,
    );
    out.insert(
        "people_flow".into(),
        people_flow(rows(summaries, "people_flow")?)?,
    );
    let payments = rows(summaries, "payments_by_month")?;
    out.insert(
        "pesos_by_month".into(),
        by_month(
            payments,
            "amount_php",
            &format!("Paid pesos per month ({timezone})"),
            "PHP",
        )?,
    );
    out.insert(
        "payments_by_month".into(),
        by_month(
            payments,
            "payments",
            &format!("Paid payments per month ({timezone})"),
            "payments",
        )?,
    );
    out.insert(
        "enrollments_by_cohort".into(),
        enrollments_by_cohort(rows(summaries, "enrollments_by_cohort")?, timezone)?,
    );
    out.insert(
        "payment_delay".into(),
        payment_delay(rows(summaries, "payment_delay")?)?,
    );
    out.insert(
        "rejects_by_month".into(),
        rejects_by_month(rows(summaries, "rejects_by_month")?, timezone)?,
    );
    Ok(out)
}

fn outcome_color(outcome: &str) -> RGBColor {
    match outcome {
        "kept" | "tagged_and_paid" => GREEN,
        "merged" | "tag_only" => LIGHT_GREEN,
        "keep_listed" => TEAL,
        "payment_only" => BLUE,
        "out_of_scope" => GREY,
        _ => RED,
    }
}

/// Source rows -> kept / merged / out of scope / rejected, one bar per source.
fn source_flow(rows: &[Map<String, Value>]) -> Result<Chart> {
    let sources: Vec<String> = unique(rows, "source_table");
    let outcomes = ["kept", "merged", "out_of_scope", "rejected"];
    let series: Vec<Series> = outcomes
        .iter()
        .map(|o| Series {
            label: o.replace('_', " "),
            color: outcome_color(o),
            values: sources
                .iter()
                .map(|s| {
                    rows.iter()
                        .filter(|r| text(&r["source_table"]) == *s && r["outcome"] == *o)
                        .map(|r| num(&r["source_rows"]))
                        .sum()
                })
                .collect(),
            thin: false,
        })
        .collect();
    stacked_bars(
        "Where every source row went",
        &sources,
        &series,
        "source rows",
        true,
    )
}

/// Customers by evidence, and the existing profiles kept, keep-listed or deleted.
fn people_flow(rows: &[Map<String, Value>]) -> Result<Chart> {
    let populations = ["customers", "existing profiles"];
    let categories = [
        "tagged_and_paid",
        "tag_only",
        "payment_only",
        "kept",
        "keep_listed",
        "deleted",
    ];
    let series: Vec<Series> = categories
        .iter()
        .map(|c| Series {
            label: c.replace('_', " "),
            color: outcome_color(c),
            values: populations
                .iter()
                .map(|p| {
                    rows.iter()
                        .filter(|r| r["population"] == *p && r["category"] == *c)
                        .map(|r| num(&r["people"]))
                        .sum()
                })
                .collect(),
            thin: false,
        })
        .collect();
    let labels: Vec<String> = populations.iter().map(|s| s.to_string()).collect();
    stacked_bars(
        "Customers and existing profiles",
        &labels,
        &series,
        "people",
        true,
    )
}

/// One line per product and version (staged thick, current thin with markers).
fn by_month(rows: &[Map<String, Value>], measure: &str, title: &str, unit: &str) -> Result<Chart> {
    let months = unique(rows, "month");
    let mut series = Vec::new();
    for (product, staged, current) in [
        ("P2P", BLUE, LIGHT_BLUE),
        ("Canva", ORANGE, LIGHT_ORANGE),
        ("other", BROWN, GREY),
    ] {
        for (version, color) in [("staged", staged), ("current", current)] {
            let values: Vec<f64> = months
                .iter()
                .map(|m| {
                    rows.iter()
                        .filter(|r| {
                            text(&r["month"]) == *m
                                && r["product"] == product
                                && r["version"] == version
                        })
                        .map(|r| num(&r[measure]))
                        .sum()
                })
                .collect();
            if values.iter().all(|v| *v == 0.0) {
                continue;
            }
            series.push(Series {
                label: format!("{product}, {version}"),
                color,
                values,
                thin: version == "current",
            });
        }
    }
    lines(title, &months, &series, unit)
}

fn enrollments_by_cohort(rows: &[Map<String, Value>], timezone: &str) -> Result<Chart> {
    let months = unique(rows, "cohort_month");
    let series: Vec<Series> = [("new", BLUE), ("existing", GREY)]
        .iter()
        .map(|(kind, color)| Series {
            label: kind.to_string(),
            color: *color,
            values: months
                .iter()
                .map(|m| {
                    rows.iter()
                        .filter(|r| text(&r["cohort_month"]) == *m && r["kind"] == *kind)
                        .map(|r| num(&r["enrollments"]))
                        .sum()
                })
                .collect(),
            thin: false,
        })
        .collect();
    stacked_bars(
        &format!("Enrollments per cohort month ({timezone})"),
        &months,
        &series,
        "enrollments",
        false,
    )
}

fn payment_delay(rows: &[Map<String, Value>]) -> Result<Chart> {
    let labels: Vec<String> = rows.iter().map(|r| text(&r["delay"])).collect();
    let series = vec![Series {
        label: "customers".into(),
        color: BLUE,
        values: rows.iter().map(|r| num(&r["customers"])).collect(),
        thin: false,
    }];
    stacked_bars(
        "Registration to first P2P payment (days)",
        &labels,
        &series,
        "customers",
        false,
    )
}

fn rejects_by_month(rows: &[Map<String, Value>], timezone: &str) -> Result<Chart> {
    let months = unique(rows, "month");
    // The most frequent reasons get their own colour; the rest are summed as "other".
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for r in rows {
        *totals.entry(text(&r["reason"])).or_default() += num(&r["source_rows"]);
    }
    let mut ranked: Vec<(String, f64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = ranked
        .iter()
        .take(PALETTE.len() - 1)
        .map(|(r, _)| r.clone())
        .collect();
    let mut series: Vec<Series> = shown
        .iter()
        .enumerate()
        .map(|(i, reason)| Series {
            label: reason.clone(),
            color: PALETTE[i],
            values: months
                .iter()
                .map(|m| {
                    rows.iter()
                        .filter(|r| text(&r["month"]) == *m && text(&r["reason"]) == *reason)
                        .map(|r| num(&r["source_rows"]))
                        .sum()
                })
                .collect(),
            thin: false,
        })
        .collect();
    if ranked.len() > shown.len() {
        series.push(Series {
            label: "other reasons".into(),
            color: GREY,
            values: months
                .iter()
                .map(|m| {
                    rows.iter()
                        .filter(|r| text(&r["month"]) == *m && !shown.contains(&text(&r["reason"])))
                        .map(|r| num(&r["source_rows"]))
                        .sum()
                })
                .collect(),
            thin: false,
        });
    }
    stacked_bars(
        &format!("Rejected source rows per month of creation ({timezone})"),
        &months,
        &series,
        "rejected rows",
        false,
    )
}

/// The distinct values of a text column, sorted.
fn unique(rows: &[Map<String, Value>], column: &str) -> Vec<String> {
    rows.iter()
        .map(|r| text(&r[column]))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn legend(series: &[Series]) -> Vec<LegendEntry> {
    series
        .iter()
        .map(|s| LegendEntry {
            label: s.label.clone(),
            color: hex(&s.color),
        })
        .collect()
}

/// Every `step`-th label of a long category axis, so that labels do not overlap.
fn label_step(n: usize, room: usize) -> usize {
    n.div_ceil(room).max(1)
}

fn format_value(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1_000.0)
    } else if v.fract() != 0.0 && v.abs() < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Stacked bars: one bar per category, one segment per series; horizontal bars when
/// `horizontal`.
fn stacked_bars(
    title: &str,
    categories: &[String],
    series: &[Series],
    unit: &str,
    horizontal: bool,
) -> Result<Chart> {
    let n = categories.len().max(1);
    // A segmented axis over 0..=last has one segment per value.
    let last = (categories.len() as i32 - 1).max(1);
    let totals: Vec<f64> = (0..categories.len())
        .map(|i| series.iter().map(|s| s.values[i]).sum())
        .collect();
    let max = totals.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.08;
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing `{title}`: {e}");
    let mut svg = String::new();
    {
        let height = if horizontal { 70 + 60 * n as u32 } else { 360 };
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let category = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => {
                let i = *i as usize;
                if i % label_step(categories.len(), if horizontal { 40 } else { 16 }) == 0 {
                    categories.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        if horizontal {
            let mut chart = ChartBuilder::on(&root)
                .caption(title, (FONT, 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(140)
                .build_cartesian_2d(0f64..max, (0..last).into_segmented())
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(n)
                .y_label_formatter(&category)
                .x_label_formatter(&|v| format_value(*v))
                .x_desc(unit)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(|e| err(&e))?;
            for i in 0..categories.len() {
                let mut x = 0.0;
                for s in series {
                    let v = s.values[i];
                    if v <= 0.0 {
                        continue;
                    }
                    let mut bar = Rectangle::new(
                        [
                            (x, SegmentValue::Exact(i as i32)),
                            (x + v, SegmentValue::Exact(i as i32 + 1)),
                        ],
                        s.color.filled(),
                    );
                    bar.set_margin(8, 8, 0, 0);
                    chart
                        .draw_series(std::iter::once(bar))
                        .map_err(|e| err(&e))?;
                    x += v;
                }
            }
        } else {
            let mut chart = ChartBuilder::on(&root)
                .caption(title, (FONT, 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d((0..last).into_segmented(), 0f64..max)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&category)
                .y_label_formatter(&|v| format_value(*v))
                .y_desc(unit)
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(|e| err(&e))?;
            for i in 0..categories.len() {
                let mut y = 0.0;
                for s in series {
                    let v = s.values[i];
                    if v <= 0.0 {
                        continue;
                    }
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i as i32), y),
                            (SegmentValue::Exact(i as i32 + 1), y + v),
                        ],
                        s.color.filled(),
                    );
                    bar.set_margin(0, 0, 2, 2);
                    chart
                        .draw_series(std::iter::once(bar))
                        .map_err(|e| err(&e))?;
                    y += v;
                }
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Chart {
        svg,
        legend: legend(series),
    })
}

/// Lines over a category axis (months).
fn lines(title: &str, categories: &[String], series: &[Series], unit: &str) -> Result<Chart> {
    let n = categories.len().max(1);
    let last = (categories.len() as i32 - 1).max(1);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().cloned())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.08;
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing `{title}`: {e}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0..last).into_segmented(), 0f64..max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i)
                    if (*i as usize) % label_step(categories.len(), 16) == 0 =>
                {
                    categories.get(*i as usize).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_label_formatter(&|v| format_value(*v))
            .y_desc(unit)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|e| err(&e))?;
        for s in series {
            let points: Vec<(SegmentValue<i32>, f64)> = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (SegmentValue::CenterOf(i as i32), *v))
                .collect();
            let width = if s.thin { 1 } else { 3 };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    points.clone(),
                    s.color.stroke_width(width),
                )))
                .map_err(|e| err(&e))?;
            if s.thin {
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, s.color.stroke_width(1))),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Chart {
        svg,
        legend: legend(series),
    })
}
