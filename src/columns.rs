//! The plain-text tables kubelab prints (`ls`, `status`, `cluster
//! status`): a header row then one row per thing, each column as wide as
//! its widest cell, two spaces between columns, no trailing blanks — what
//! `virsh list` and `kubectl get` print, so that `awk` and eyes read both.

/// The rows (header first) as aligned lines, each ending in a newline.
/// Rows shorter than the longest one are read as ending in empty cells.
pub fn render<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["VM".to_string(), "STATE".into(), "ADDRESSES".into()],
            vec!["node-1".into(), "running".into(), "192.0.2.10".into()],
            vec!["n2".into(), "shut off".into(), String::new()],
        ];
        assert_eq!(
            render(&rows),
            "VM      STATE     ADDRESSES\n\
             node-1  running   192.0.2.10\n\
             n2      shut off\n"
        );
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let rows = vec![
            ["É".to_string(), "x".into()],
            ["ab".to_string(), "y".into()],
        ];
        assert_eq!(render(&rows), "É   x\nab  y\n");
    }

    #[test]
    fn no_rows_no_text() {
        assert_eq!(render::<Vec<String>>(&[]), "");
    }
}
