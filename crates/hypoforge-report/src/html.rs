//! The HTML primitives: escaping, number formatting and the page skeleton.

/// One stylesheet for every page: the report must look the same opened from disk anywhere, so
/// it names only fonts that every system has and loads nothing.
pub(crate) const STYLESHEET: &str = include_str!("style.css");

/// Scripts are never needed, so the pages forbid them: should a string ever slip through
/// unescaped, the browser still refuses to run it. Styles may be inline because figures drawn
/// elsewhere may carry their own.
const CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:";

/// Makes any string safe both as element text and inside a double- or single-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Non-finite values are real outcomes (a diverged loss, an undefined correlation) and must be
/// shown as such rather than break the layout or pass for a number.
fn non_finite(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("NaN")
    } else if x == f64::INFINITY {
        Some("∞")
    } else if x == f64::NEG_INFINITY {
        Some("−∞")
    } else {
        None
    }
}

/// `decimals` places; "-0.00" becomes "0.00" so that a rounded zero does not look negative.
pub(crate) fn fixed(x: f64, decimals: usize) -> String {
    if let Some(s) = non_finite(x) {
        return s.to_owned();
    }
    let s = format!("{x:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => s,
    }
}

/// Four significant digits: losses range from 1e-4 to 1e2 between tasks, and a fixed number of
/// places would show the small ones as zero.
pub(crate) fn significant(x: f64) -> String {
    if let Some(s) = non_finite(x) {
        return s.to_owned();
    }
    let a = x.abs();
    if a == 0.0 {
        return "0".to_owned();
    }
    if (1e-3..1e6).contains(&a) {
        // floor(log10(a)) is in -3..=5 here, so the cast cannot truncate.
        let magnitude = a.log10().floor() as i32;
        let decimals = usize::try_from(3 - magnitude).unwrap_or(0);
        fixed(x, decimals)
    } else {
        format!("{x:.3e}")
    }
}

/// A missing value (no accuracy for a regression task) is a dash, unlike a non-finite one.
pub(crate) fn optional(x: Option<f64>, format: fn(f64) -> String) -> String {
    x.map_or_else(|| "—".to_owned(), format)
}

/// A win rate with its 95% interval: "0.62 [0.55, 0.69]".
pub(crate) fn rate_with_ci(rate: f64, ci: [f64; 2]) -> String {
    format!(
        "{} <span class=\"ci\">[{}, {}]</span>",
        fixed(rate, 2),
        fixed(ci[0], 2),
        fixed(ci[1], 2)
    )
}

/// A whole document; `root` is the relative path back to the report's folder ("" or "../"), so
/// that links work from disk wherever the folder is moved.
pub(crate) fn document(title: &str, root: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"{root}style.css\">\n\
         </head>\n<body>\n{body}</body>\n</html>\n",
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_both_quote_styles() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ünïcode τ"), "plain ünïcode τ");
        assert_eq!(escape(""), "");
        // Escaping is not idempotent on purpose: a literal "&lt;" in a source must stay visible.
        assert_eq!(escape("&lt;"), "&amp;lt;");
    }

    #[test]
    fn escape_leaves_no_markup_characters() {
        let hostile = "</pre><script>alert(1)</script><img src=x onerror=\"document.title='p'\">";
        let e = escape(hostile);
        assert!(!e.contains(['<', '>', '"', '\'']), "{e}");
    }

    #[test]
    fn fixed_rounds_and_hides_negative_zero() {
        assert_eq!(fixed(0.6249, 2), "0.62");
        assert_eq!(fixed(0.6251, 2), "0.63");
        assert_eq!(fixed(1.0, 2), "1.00");
        assert_eq!(fixed(-0.001, 2), "0.00");
        assert_eq!(fixed(-0.0, 0), "0");
        assert_eq!(fixed(-0.5, 2), "-0.50");
        assert_eq!(fixed(3.0, 0), "3");
    }

    #[test]
    fn non_finite_numbers_are_named() {
        for format in [|x| fixed(x, 2), significant as fn(f64) -> String] {
            assert_eq!(format(f64::NAN), "NaN");
            assert_eq!(format(f64::INFINITY), "∞");
            assert_eq!(format(f64::NEG_INFINITY), "−∞");
        }
        assert_eq!(
            rate_with_ci(f64::NAN, [0.1, f64::INFINITY]),
            "NaN <span class=\"ci\">[0.10, ∞]</span>"
        );
    }

    #[test]
    fn significant_keeps_four_digits_across_magnitudes() {
        assert_eq!(significant(0.0), "0");
        assert_eq!(significant(2.312_345), "2.312");
        assert_eq!(significant(0.5), "0.5000");
        assert_eq!(significant(0.012346), "0.01235");
        assert_eq!(significant(123.456), "123.5");
        assert_eq!(significant(-42.0), "-42.00");
        assert_eq!(significant(12345.6), "12346");
        assert_eq!(significant(0.000_123_4), "1.234e-4");
        assert_eq!(significant(1.5e9), "1.500e9");
    }

    #[test]
    fn missing_values_are_a_dash() {
        assert_eq!(optional(None, significant), "—");
        assert_eq!(optional(Some(0.25), |x| fixed(x, 3)), "0.250");
        assert_eq!(optional(Some(f64::NAN), significant), "NaN");
    }

    #[test]
    fn document_escapes_its_title() {
        let d = document("<b>run</b>", "../", "<p>x</p>\n");
        assert!(d.contains("<title>&lt;b&gt;run&lt;/b&gt;</title>"));
        assert!(d.contains("href=\"../style.css\""));
        assert!(d.starts_with("<!DOCTYPE html>"));
    }
}
