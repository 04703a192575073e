//! The results table: rows, markdown, JSON, and the "Latest results"
//! section of docs/benchmarks.md.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// No target: the figure is reported only.
    Report,
}

impl Verdict {
    pub fn from_check(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::Report => "report",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
    pub method: String,
    /// The figures behind `value`, machine-readable.
    pub data: serde_json::Value,
}

impl Row {
    pub fn new(
        metric: &str,
        value: String,
        target: &str,
        verdict: Verdict,
        method: String,
        data: serde_json::Value,
    ) -> Row {
        Row {
            metric: metric.to_string(),
            value,
            target: target.to_string(),
            verdict,
            method,
            data,
        }
    }

    /// A row for a section that could not be measured.
    pub fn error(metric: &str, err: &anyhow::Error) -> Row {
        let msg = format!("{err:#}");
        let short: String = msg.chars().take(160).collect();
        Row::new(
            metric,
            "error".to_string(),
            "",
            Verdict::Fail,
            short,
            serde_json::json!({ "error": msg }),
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub generated: String,
    pub mode: String,
    pub host: String,
    pub kedge: String,
    /// `kedge --version`.
    pub version: String,
    pub commit: String,
    pub rows: Vec<Row>,
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl Report {
    /// The table alone.
    pub fn table(&self) -> String {
        let mut out = String::from("| Metric | Value | Target | Result | Method |\n");
        out.push_str("|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(&r.metric),
                cell(&r.value),
                cell(&r.target),
                r.verdict.label(),
                cell(&r.method)
            ));
        }
        out
    }

    /// The table under a line saying when, where and how it was taken.
    pub fn markdown(&self) -> String {
        format!(
            "Run {} ({} mode) of `{}` ({}) at commit {} on {}.\n\n{}",
            self.generated,
            self.mode,
            self.kedge,
            self.version,
            self.commit,
            self.host,
            self.table()
        )
    }
}

pub const RESULTS_START: &str = "<!-- kedge-bench:results:start -->";
pub const RESULTS_END: &str = "<!-- kedge-bench:results:end -->";

/// `doc` with the text between the results markers replaced by `results`.
pub fn replace_results(doc: &str, results: &str) -> Option<String> {
    let start = doc.find(RESULTS_START)? + RESULTS_START.len();
    let end = start + doc[start..].find(RESULTS_END)?;
    Some(format!(
        "{}\n\n{}\n\n{}",
        &doc[..start],
        results.trim_end(),
        &doc[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            generated: "2025-01-01T00:00:00Z".into(),
            mode: "quick".into(),
            host: "2 CPUs".into(),
            kedge: "target/release/kedge".into(),
            version: "kedge version v1.33.0+kedge.1".into(),
            commit: "abc".into(),
            rows: vec![Row::new(
                "Binary size",
                "8.0 MiB".into(),
                "<= 25 MiB",
                Verdict::Pass,
                "a | b".into(),
                serde_json::json!({}),
            )],
        }
    }

    #[test]
    fn table_escapes_pipes() {
        let t = report().table();
        assert!(t.contains("| Binary size | 8.0 MiB | <= 25 MiB | pass | a \\| b |"));
    }

    #[test]
    fn results_section_is_replaced_in_place() {
        let doc =
            format!("# B\n\n## Latest results\n\n{RESULTS_START}\nold\n{RESULTS_END}\n\nafter\n");
        let new = replace_results(&doc, "new table\n").expect("markers");
        assert_eq!(
            new,
            format!(
                "# B\n\n## Latest results\n\n{RESULTS_START}\n\nnew table\n\n{RESULTS_END}\n\nafter\n"
            )
        );
        let again = replace_results(&new, "newer\n").expect("markers");
        assert!(again.contains("newer") && !again.contains("new table"));
        assert!(replace_results("no markers", "x").is_none());
    }
}
