//! JUnit XML for `kubelab verify --junit FILE`: one test suite per scenario,
//! one test case per verify step and host, so CI systems show which check
//! failed where.

use std::fmt::Write as _;

use crate::executor::RunReport;
use crate::output::Status;

/// The outcome of one scenario's verify run.
pub struct Suite<'a> {
    pub name: &'a str,
    pub report: &'a RunReport,
}

fn escape(s: &str) -> String {
    // XML 1.0 has no way to carry other control characters.
    let carried: String = s
        .chars()
        .map(|c| {
            if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                '?'
            } else {
                c
            }
        })
        .collect();
    crate::markup::escape_xml(&carried)
}

/// The JUnit document of the suites.
pub fn render(suites: &[Suite<'_>]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let count = |f: &dyn Fn(Status) -> bool| -> usize {
        suites
            .iter()
            .map(|s| s.report.records.iter().filter(|r| f(r.status)).count())
            .sum()
    };
    let _ = writeln!(
        out,
        "<testsuites name=\"kubelab verify\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
        count(&|_| true),
        count(&|s| matches!(s, Status::Failed | Status::Unreachable)),
        count(&|s| s == Status::Skipped),
    );
    for suite in suites {
        let records = &suite.report.records;
        let failures = records
            .iter()
            .filter(|r| matches!(r.status, Status::Failed | Status::Unreachable))
            .count();
        let skipped = records
            .iter()
            .filter(|r| r.status == Status::Skipped)
            .count();
        let time: f64 = records.iter().map(|r| r.duration.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
            escape(suite.name),
            records.len()
        );
        for r in records {
            let _ = write!(
                out,
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
                escape(suite.name),
                escape(&r.host),
                escape(&r.step),
                r.duration.as_secs_f64()
            );
            match r.status {
                Status::Failed | Status::Unreachable => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        escape(&r.message),
                        r.status.as_str(),
                        escape(&evidence(r))
                    );
                }
                Status::Skipped => {
                    let _ = writeln!(out, ">\n      <skipped/>\n    </testcase>");
                }
                Status::Ok | Status::Changed => {
                    let _ = writeln!(out, "/>");
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

fn evidence(r: &crate::executor::StepRecord) -> String {
    let mut text = format!("{} ({})\n", r.location, r.module);
    if !r.message.is_empty() {
        let _ = writeln!(text, "{}", r.message);
    }
    for (name, stream) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if !stream.trim().is_empty() {
            let _ = writeln!(text, "--- {name}\n{}", crate::output::tail(stream, 40));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::StepRecord;
    use std::time::Duration;

    fn record(step: &str, status: Status, message: &str) -> StepRecord {
        StepRecord {
            host: "node-1".into(),
            play: "verify".into(),
            step: step.into(),
            location: "verify.yaml:3:5".into(),
            module: "assert",
            status,
            changed: false,
            duration: Duration::from_millis(250),
            message: message.into(),
            stdout: "64 bytes from 10.0.3.2\n".into(),
            stderr: String::new(),
            diff: None,
            params: serde_json::Value::Null,
        }
    }

    #[test]
    fn failures_carry_message_and_evidence_escaped() {
        let report = RunReport {
            summary: Default::default(),
            records: vec![
                record("HTTP reaches the server", Status::Ok, ""),
                record(
                    "ICMP <dropped> & counted",
                    Status::Failed,
                    "expected 0 \"replies\"",
                ),
                record("optional", Status::Skipped, ""),
            ],
        };
        let xml = render(&[Suite {
            name: "service-chain",
            report: &report,
        }]);
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"ICMP &lt;dropped&gt; &amp; counted\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"expected 0 &quot;replies&quot;\""),
            "{xml}"
        );
        assert!(xml.contains("64 bytes from 10.0.3.2"), "{xml}");
        assert!(xml.contains("classname=\"service-chain.node-1\""), "{xml}");
        assert!(xml.contains("<skipped/>"), "{xml}");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("testcase"))
                .count(),
            3
        );
    }
}
