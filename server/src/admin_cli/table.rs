//! Plain-text tables: columns padded to their widest cell, numbers right
//! aligned, two spaces between columns, no colour.

/// Renders `rows` under `headers` (no header line when `headers` is empty).
/// A column whose cells are all numbers (or empty, or `-`) is right aligned.
/// Every line ends with a newline; trailing spaces are trimmed.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain(std::iter::once(headers.len()))
        .max()
        .unwrap_or(0);
    let cell = |row: &[String], c: usize| row.get(c).map_or("", String::as_str).to_string();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut widths = vec![0usize; columns];
    let mut numeric = vec![false; columns];
    for (c, width) in widths.iter_mut().enumerate() {
        *width = header_row.get(c).map_or(0, |h| h.chars().count());
        let (mut numbers, mut others) = (0, 0);
        for row in rows {
            let text = cell(row, c);
            *width = (*width).max(text.chars().count());
            match is_number(&text) {
                Some(true) => numbers += 1,
                Some(false) => {}
                None => others += 1,
            }
        }
        numeric[c] = numbers > 0 && others == 0;
    }
    let mut out = String::new();
    let mut line = |row: &[String]| {
        let mut text = String::new();
        for (c, width) in widths.iter().enumerate() {
            if c > 0 {
                text.push_str("  ");
            }
            let value = cell(row, c);
            let pad = width.saturating_sub(value.chars().count());
            if numeric[c] {
                text.push_str(&" ".repeat(pad));
                text.push_str(&value);
            } else {
                text.push_str(&value);
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    if !headers.is_empty() {
        line(&header_row);
    }
    for row in rows {
        line(row);
    }
    out
}

/// Whether a cell is a number as the tables show it (`12`, `-3`, `1.031`,
/// `33.3%`, `1.5 KiB`): `Some(true)`; a placeholder (`-`, empty):
/// `Some(false)`; anything else: `None`.
fn is_number(text: &str) -> Option<bool> {
    if text.is_empty() || text == "-" {
        return Some(false);
    }
    let text = text.strip_suffix('%').unwrap_or(text);
    let text = match text.split_once(' ') {
        Some((n, "B" | "KiB" | "MiB" | "GiB" | "TiB")) => n,
        _ => text,
    };
    text.parse::<f64>()
        .is_ok_and(f64::is_finite)
        .then_some(true)
}

#[cfg(test)]
mod tests {
    use super::render;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn pads_columns_and_right_aligns_numbers() {
        let text = render(
            &["NODE", "PARTITIONS", "SHARE"],
            &[row(&["a", "5", "50.0%"]), row(&["longer-id", "12", "-"])],
        );
        assert_eq!(
            text,
            "NODE       PARTITIONS  SHARE\n\
             a                   5  50.0%\n\
             longer-id          12      -\n"
        );
    }

    #[test]
    fn short_rows_and_no_headers() {
        let text = render(&[], &[row(&["key", "value"]), row(&["k"])]);
        assert_eq!(text, "key  value\nk\n");
        // A column of placeholders only stays left aligned.
        let text = render(&["A", "PEER"], &[row(&["x", "-"]), row(&["y", "host:1"])]);
        assert_eq!(text, "A  PEER\nx  -\ny  host:1\n");
        let text = render(&["ID", "PEER"], &[row(&["x", "-"])]);
        assert_eq!(text, "ID  PEER\nx   -\n");
        assert_eq!(render(&[], &[]), "");
    }
}
