//! The dashboard's charts, drawn by `plotters` (SVG backend only) on the server: one
//! chart per purpose, opt-in rate by day, a line per prompt variant inside its shaded
//! 95% interval. Server-drawn SVG needs no script on the page, so the dashboard runs
//! under `script-src 'nonce-…'` with no script at all.
//!
//! Only slugs, dates and numbers reach the SVG text (variant and purpose ids, not the
//! operator's free-text titles, which the template escapes), so the SVG can be inlined
//! as it is.

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
}
