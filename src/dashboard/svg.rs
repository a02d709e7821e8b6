//! Charts drawn on the server as SVG (no script, no library): a bar chart of a series and a
//! meter. Colours come from the stylesheet's classes (no inline style, so the CSP holds), text is
//! escaped by maud, and every chart carries a title and a description for screen readers.

use maud::{Markup, html};

/// One bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// The label under the bar (short).
    pub label: String,
    /// The value.
    pub value: f64,
    /// Drawn in the second colour (e.g. the prior week).
    pub muted: bool,
}

fn fmt(value: f64) -> String {
    if !value.is_finite() {
        "no data".to_string()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// A vertical bar chart with a zero baseline, a top grid line at the largest value, and a label
/// every `label_every` bars. `id` must be unique in the page (it names the title element).
pub fn bars(
    id: &str,
    title: &str,
    description: &str,
    bars: &[Bar],
    unit: &str,
    label_every: usize,
) -> Markup {
    let width = 720.0_f64;
    let height = 220.0_f64;
    let (left, right, top, bottom) = (48.0, 8.0, 16.0, 28.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { plot_h / max } else { 0.0 };
    let slot = if bars.is_empty() {
        plot_w
    } else {
        plot_w / bars.len() as f64
    };
    let bar_w = (slot * 0.7).max(1.0);
    let every = label_every.max(1);
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    html! {
        svg.chart id=(id) viewBox={ "0 0 " (width) " " (height) } role="img"
            aria-labelledby={ (title_id) " " (desc_id) } xmlns="http://www.w3.org/2000/svg" {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (description) }
            line.axis x1=(left) y1=(top + plot_h) x2=(width - right) y2=(top + plot_h) {}
            line.grid x1=(left) y1=(top) x2=(width - right) y2=(top) stroke-dasharray="4 4" {}
            text x=(left - 6.0) y=(top + 4.0) text-anchor="end" { (fmt(max)) (unit) }
            text x=(left - 6.0) y=(top + plot_h) text-anchor="end" { "0" }
            @for (i, bar) in bars.iter().enumerate() {
                @let value = if bar.value.is_finite() { bar.value.max(0.0) } else { 0.0 };
                @let h = value * scale;
                @let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
                rect class=(if bar.muted { "bar prior" } else { "bar" })
                    x=(format!("{x:.1}")) y=(format!("{:.1}", top + plot_h - h))
                    width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) {
                    title { (bar.label) ": " (fmt(bar.value)) (unit) }
                }
                @if i % every == 0 || i + 1 == bars.len() {
                    text x=(format!("{:.1}", x + bar_w / 2.0)) y=(height - 10.0) text-anchor="middle" { (bar.label) }
                }
            }
        }
    }
}

/// A horizontal meter from 0 to 100 %: `tone` is `ok`, `warn` or `bad`.
pub fn meter(id: &str, label: &str, percent: Option<f64>, tone: &str) -> Markup {
    let width = 300.0_f64;
    let p = percent
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 100.0));
    let fill = p.unwrap_or(0.0) / 100.0 * width;
    let text = match p {
        Some(v) => format!("{label}: {v:.1} %"),
        None => format!("{label}: unknown"),
    };
    html! {
        svg.meter id=(id) viewBox={ "0 0 " (width) " 14" } width="100%" height="14" role="img" aria-label=(text)
            preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
            title { (text) }
            rect.track x="0" y="0" width=(width) height="14" rx="7" {}
            rect class={ "fill-" (tone) } x="0" y="0" width=(format!("{fill:.1}")) height="14" rx="7" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let svg = bars(
            "c",
            "Cost <b>",
            "d",
            &[
                Bar {
                    label: "a<".into(),
                    value: 10.0,
                    muted: true,
                },
                Bar {
                    label: "b".into(),
                    value: 20.0,
                    muted: false,
                },
                Bar {
                    label: "n".into(),
                    value: f64::NAN,
                    muted: false,
                },
            ],
            "$",
            1,
        )
        .into_string();
        assert!(svg.contains("Cost &lt;b&gt;"), "{svg}");
        assert!(svg.contains("a&lt;"), "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
        // The largest bar fills the plot height (220 - 16 - 28 = 176).
        assert!(svg.contains("height=\"176.0\""), "{svg}");
        assert!(svg.contains("class=\"bar prior\""));
    }

    #[test]
    fn meter_clamps_and_says_unknown() {
        assert!(
            meter("m", "Budget", Some(150.0), "ok")
                .into_string()
                .contains("100.0 %")
        );
        assert!(
            meter("m", "Budget", None, "bad")
                .into_string()
                .contains("unknown")
        );
    }
}
