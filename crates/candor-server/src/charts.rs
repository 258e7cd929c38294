//! The dashboard's charts, drawn by `plotters` (SVG backend only) on the server: one
//! chart per purpose, opt-in rate by day, a line per prompt variant inside its shaded
//! 95% interval; segment sizes by day; and the email page's (issue 16) growth of each
//! list (confirmations above the axis, departures below, per day) and campaigns'
//! messages by status as stacked horizontal bars. Server-drawn SVG needs no script on the page, so the dashboard runs
//! under `script-src 'nonce-…'` with no script at all.
//!
//! Only slugs, dates and numbers reach the SVG text (variant, purpose and list ids,
//! campaigns as `#id`, not the operator's free-text titles and names, which the template
//! escapes), so the SVG can be inlined as it is.

use crate::prompt::{Rate, VariantReport};
use plotters::prelude::*;

/// Line colours, told apart by people with the common colour-vision deficiencies
/// (Okabe & Ito's palette), each at least 3:1 against white.
const PALETTE: [RGBColor; 4] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 128, 96),
    RGBColor(204, 121, 167),
];

/// The SVG of one purpose's chart, or a message when there is nothing to draw.
pub fn opt_in_chart(
    purpose: &str,
    days: &[String],
    variants: &[VariantReport],
) -> Result<String, String> {
    let series: Vec<(&str, Vec<(f64, &Rate)>)> = variants
        .iter()
        .map(|v| {
            let points = v
                .daily
                .get(purpose)
                .map(|d| {
                    d.iter()
                        .filter_map(|(day, rate)| {
                            days.iter().position(|x| x == day).map(|i| (i as f64, rate))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (v.variant.as_str(), points)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().filter_map(|(_, r)| r.interval.map(|i| i[1])))
        .fold(0.05f64, f64::max);
    let y_max = ((top * 10.0).ceil() / 10.0).min(1.0);
    let x_max = (days.len().max(2) - 1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        let label_of = |x: &f64| {
            days.get(x.round() as usize)
                .map(|d| d.get(5..).unwrap_or(d).to_owned())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&label_of)
            .y_labels(6)
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .y_desc("opt-in rate")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut band: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|(x, r)| r.interval.map(|iv| (*x, iv[1])))
                .collect();
            band.extend(
                points
                    .iter()
                    .rev()
                    .filter_map(|(x, r)| r.interval.map(|iv| (*x, iv[0]))),
            );
            if band.len() >= 3 {
                chart
                    .draw_series(std::iter::once(Polygon::new(band, color.mix(0.18))))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().filter_map(|(x, r)| r.rate.map(|v| (*x, v))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("{name} (95% interval shaded)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(140, 140, 140))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    // Name the drawing for assistive technology; the table beside it has the numbers.
    Ok(svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-labelledby=\"chart-{purpose}\" focusable=\"false\" "),
        1,
    ))
}

/// One line per segment: its size on each recorded day (issue 14). Segment names are
/// slugs, so they may go into the SVG as they are.
pub fn segment_sizes_chart(
    days: &[String],
    series: &[(String, Vec<(usize, i64)>)],
) -> Result<String, String> {
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, n)| *n))
        .max()
        .unwrap_or(0)
        .max(1);
    let y_max = (top as f64 * 1.15).ceil().max(top as f64 + 1.0);
    let x_max = (days.len().max(2) - 1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        let label_of = |x: &f64| {
            days.get(x.round() as usize)
                .map(|d| d.get(5..).unwrap_or(d).to_owned())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&label_of)
            // Whole people: no more labels than whole numbers on the axis.
            .y_labels((y_max as usize + 1).min(6))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("people")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, n)| (*x as f64, *n as f64)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            // A single day is a point, not a line: mark every day.
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|(x, n)| Circle::new((*x as f64, *n as f64), 3, color.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(140, 140, 140))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg.replacen(
        "<svg ",
        "<svg role=\"img\" aria-labelledby=\"sizes-h\" focusable=\"false\" ",
        1,
    ))
}

/// Colours of the email charts (Okabe & Ito's palette, plus a grey).
const SENT: RGBColor = RGBColor(0, 114, 178);
const BOUNCED: RGBColor = RGBColor(213, 94, 0);
const FAILED: RGBColor = RGBColor(204, 121, 167);
const SKIPPED: RGBColor = RGBColor(120, 120, 120);
const WAITING: RGBColor = RGBColor(86, 180, 233);
const LEFT: RGBColor = RGBColor(230, 159, 0);
const CONFIRMED: RGBColor = RGBColor(0, 128, 96);

/// The colour of a campaign's message status in [`campaigns_chart`], by status name.
fn status_color(status: &str) -> RGBColor {
    match status {
        "sent" => SENT,
        "bounced" => BOUNCED,
        "failed" => FAILED,
        "skipped" => SKIPPED,
        _ => WAITING,
    }
}

/// A label for whole-number positions only (plotters may put key points between).
fn whole(v: f64) -> Option<i64> {
    ((v - v.round()).abs() < 1e-6).then_some(v.round() as i64)
}

/// One list's growth: per day, confirmations as bars above the axis and departures
/// below. `points[i]` is `(confirmed, left)` on `days[i]`. The SVG is labelled by the
/// element `growth-{list}` (the section's heading); `list` is a list name (letters,
/// digits, `_`, `-`, `.`).
pub fn list_growth_chart(
    list: &str,
    days: &[String],
    points: &[(i64, i64)],
) -> Result<String, String> {
    let up = points.iter().map(|p| p.0).max().unwrap_or(0).max(1) as f64;
    let down = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    // Headroom above the tallest bar for the legend in the upper left.
    let (top, bottom) = ((up * 1.4).ceil() + 1.0, -(down * 1.2).ceil());
    let x_max = days.len().max(1) as f64 - 0.5;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..x_max, bottom..top)
            .map_err(|e| e.to_string())?;
        let label_of = |x: &f64| {
            whole(*x)
                .and_then(|i| days.get(usize::try_from(i).ok()?))
                .map(|d| d.get(5..).unwrap_or(d).to_owned())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(10)
            .x_label_formatter(&label_of)
            // Whole people: a label (and a grid line) per whole number, at most 9.
            .y_labels(((top - bottom) as usize + 1).min(9))
            .light_line_style(WHITE)
            // Departures are drawn below the axis but are counts of people.
            .y_label_formatter(&|y| whole(*y).map(|n| n.abs().to_string()).unwrap_or_default())
            .y_desc("people per day")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.0 > 0)
                    .map(|(i, p)| {
                        let x = i as f64;
                        Rectangle::new(
                            [(x - 0.35, 0.0), (x + 0.35, p.0 as f64)],
                            CONFIRMED.filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?
            .label("confirmed (above the line)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], CONFIRMED.filled()));
        chart
            .draw_series(
                points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.1 > 0)
                    .map(|(i, p)| {
                        let x = i as f64;
                        Rectangle::new([(x - 0.35, -(p.1 as f64)), (x + 0.35, 0.0)], LEFT.filled())
                    }),
            )
            .map_err(|e| e.to_string())?
            .label("left (below the line)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], LEFT.filled()));
        chart
            .draw_series(LineSeries::new(
                [(-0.5, 0.0), (x_max, 0.0)],
                RGBColor(87, 96, 106).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(140, 140, 140))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-labelledby=\"growth-{list}\" focusable=\"false\" "),
        1,
    ))
}

/// One campaign's bar in [`campaigns_chart`].
pub struct CampaignBar {
    /// The campaign's id (its name is the operator's free text: it stays in the table).
    pub id: i64,
    /// Messages per status, stacked in this order (`queued`, `sent`, ...).
    pub messages: Vec<(&'static str, i64)>,
    /// Recipients who left the list through the campaign's unsubscribe link (a thinner
    /// bar beneath).
    pub left: i64,
}

/// Campaigns as stacked horizontal bars of their messages by status, newest at the
/// top, each with a thin bar beneath for the people who left its list since it
/// started. Labelled by the element `campaigns-h`.
pub fn campaigns_chart(bars: &[CampaignBar]) -> Result<String, String> {
    let n = bars.len().max(1);
    let widest = bars
        .iter()
        .map(|b| b.messages.iter().map(|m| m.1).sum::<i64>().max(b.left))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    // Room on the right for the legend.
    let x_max = (widest * 1.45).ceil();
    let height = (90 + 56 * n as u32).max(250);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, -0.5f64..(n as f64 - 0.5))
            .map_err(|e| e.to_string())?;
        // Newest (first) at the top.
        let row_y = |i: usize| (n - 1 - i) as f64;
        let label_of = |y: &f64| {
            whole(*y)
                .and_then(|r| usize::try_from(r).ok())
                .filter(|r| *r < n)
                .and_then(|r| bars.get(n - 1 - r))
                .map(|b| format!("#{}", b.id))
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(2 * n + 1)
            .y_label_formatter(&label_of)
            // Whole messages: a label (and a grid line) per whole number, at most 10.
            .x_labels((x_max as usize + 1).min(10))
            .x_label_formatter(&|x| whole(*x).map(|v| v.to_string()).unwrap_or_default())
            .x_desc("messages; recipients who unsubscribed")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        let mut statuses: Vec<&'static str> = Vec::new();
        for b in bars {
            for (s, _) in &b.messages {
                if !statuses.contains(s) {
                    statuses.push(s);
                }
            }
        }
        for status in statuses {
            let color = status_color(status);
            let rects: Vec<_> = bars
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let at = b.messages.iter().position(|m| m.0 == status)?;
                    let start: i64 = b.messages[..at].iter().map(|m| m.1).sum();
                    let len = b.messages[at].1;
                    (len > 0).then(|| {
                        let y = row_y(i);
                        Rectangle::new(
                            [(start as f64, y + 0.05), ((start + len) as f64, y + 0.35)],
                            color.filled(),
                        )
                    })
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(|e| e.to_string())?
                .label(status)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| b.left > 0)
                    .map(|(i, b)| {
                        let y = row_y(i);
                        Rectangle::new([(0.0, y - 0.25), (b.left as f64, y - 0.1)], LEFT.filled())
                    }),
            )
            .map_err(|e| e.to_string())?
            .label("unsubscribed through it")
            .legend(|(x, y)| Rectangle::new([(x, y - 3), (x + 12, y + 3)], LEFT.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(140, 140, 140))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg.replacen(
        "<svg ",
        "<svg role=\"img\" aria-labelledby=\"campaigns-h\" focusable=\"false\" ",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::report;
    use candor_store::PromptCount;

    #[test]
    fn a_chart_per_purpose_that_a_strict_page_policy_allows() {
        let c = |day, variant: &str, purpose: &str, metric: &str, count| PromptCount {
            day,
            variant: variant.into(),
            purpose: purpose.into(),
            metric: metric.into(),
            count,
        };
        let counts = vec![
            c(100, "a", "", "impression", 50),
            c(100, "a", "analytics", "granted", 20),
            c(101, "a", "", "impression", 40),
            c(101, "a", "analytics", "granted", 10),
            c(100, "b", "", "impression", 30),
            c(100, "b", "analytics", "granted", 3),
        ];
        let catalog = crate::config::Settings::parse("", "t", &|_| None)
            .unwrap()
            .catalog
            .build(
                &[
                    "analytics",
                    "personalization",
                    "ads_insights",
                    "email_marketing",
                    "loyalty",
                ]
                .iter()
                .enumerate()
                .map(|(i, p)| (candor_core::PurposeId::parse(p).unwrap(), i as u8))
                .collect(),
            )
            .unwrap();
        let r = report(&catalog, &counts, 100, 101);
        let days = vec!["1970-04-11".to_owned(), "1970-04-12".to_owned()];
        let svg = opt_in_chart("analytics", &days, &r.variants).unwrap();
        assert!(svg.starts_with("<svg role=\"img\" aria-labelledby=\"chart-analytics\""));
        // Presentation attributes only: a style attribute would need 'unsafe-inline'.
        assert!(!svg.contains("style="));
        assert!(!svg.contains("<script"));
        // One line per variant (two points for a, one for b) and a band for a.
        assert!(svg.contains("a (95% interval shaded)") && svg.contains("b (95% interval shaded)"));
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }

    #[test]
    fn segment_sizes_draw_a_line_per_segment() {
        let days: Vec<String> = (1..=3).map(|d| format!("2026-12-0{d}")).collect();
        let series = vec![
            ("runners".to_owned(), vec![(0, 10), (1, 12), (2, 9)]),
            ("travellers".to_owned(), vec![(2, 4)]),
        ];
        let svg = segment_sizes_chart(&days, &series).unwrap();
        assert!(svg.starts_with("<svg role=\"img\" aria-labelledby=\"sizes-h\""));
        assert!(svg.contains("runners") && svg.contains("travellers"));
        assert!(!svg.contains("style=") && !svg.contains("<script"));
    }

    #[test]
    fn list_growth_draws_confirmations_up_and_departures_down() {
        let days: Vec<String> = (1..=3).map(|d| format!("2026-12-0{d}")).collect();
        let svg = list_growth_chart("news", &days, &[(3, 0), (0, 0), (1, 2)]).unwrap();
        assert!(svg.starts_with("<svg role=\"img\" aria-labelledby=\"growth-news\""));
        assert!(
            svg.contains("confirmed (above the line)") && svg.contains("left (below the line)")
        );
        assert!(!svg.contains("style=") && !svg.contains("<script"));
        // Two confirmation bars and one departure bar, besides the legend's swatches.
        let fill = |c: RGBColor| format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        assert_eq!(svg.matches(&fill(CONFIRMED)).count(), 3, "{svg}");
        assert_eq!(svg.matches(&fill(LEFT)).count(), 2, "{svg}");
    }

    #[test]
    fn campaigns_stack_their_messages_by_status() {
        let bars = vec![
            CampaignBar {
                id: 2,
                messages: vec![("queued", 1), ("sent", 5), ("bounced", 1), ("failed", 0)],
                left: 2,
            },
            CampaignBar {
                id: 1,
                messages: vec![("queued", 0), ("sent", 3), ("bounced", 0), ("failed", 0)],
                left: 0,
            },
        ];
        let svg = campaigns_chart(&bars).unwrap();
        assert!(svg.starts_with("<svg role=\"img\" aria-labelledby=\"campaigns-h\""));
        assert!(svg.contains("#1") && svg.contains("#2"), "{svg}");
        assert!(!svg.contains("style=") && !svg.contains("<script"));
        let fill = |c: RGBColor| format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        // Bars of sent for both campaigns, plus the legend's swatch.
        assert_eq!(svg.matches(&fill(SENT)).count(), 3, "{svg}");
        assert_eq!(svg.matches(&fill(BOUNCED)).count(), 2, "{svg}");
        assert_eq!(svg.matches(&fill(LEFT)).count(), 2, "{svg}");
        assert_eq!(
            svg.matches(&fill(FAILED)).count(),
            1,
            "only the legend: {svg}"
        );
    }
}
