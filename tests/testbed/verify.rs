//! `kubelab verify` of one scenario on the test bed, read back from its
//! JUnit report: which checks failed on which host, with their evidence.

use super::Testbed;

fn unescape(s: &str) -> String {
    s.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The attribute `name` of an XML start tag's text.
fn attr(tag: &str, name: &str) -> String {
    let key = format!(" {name}=\"");
    tag.split_once(&key)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| unescape(v))
        .unwrap_or_default()
}

/// The failed test cases of a JUnit file: `(classname, name, failure text)`.
fn failures(junit: &str) -> Vec<(String, String, String)> {
    junit
        .split("<testcase")
        .skip(1)
        .filter_map(|case| {
            let body = case.split("</testcase>").next().unwrap_or(case);
            let (_, failure) = body.split_once("<failure")?;
            Some((
                attr(case, "classname"),
                attr(case, "name"),
                unescape(failure),
            ))
        })
        .collect()
}

/// Run verify of one scenario with JUnit; whether it passed and its failures.
pub fn verify(tb: &Testbed, lab: &str, scenario: &str) -> (bool, Vec<(String, String, String)>) {
    let junit = tempfile::NamedTempFile::new().unwrap();
    let path = junit.path().to_str().unwrap();
    let out = tb.kubelab(&["verify", lab, "--scenario", scenario, "--junit", path]);
    let xml = std::fs::read_to_string(junit.path()).unwrap_or_default();
    assert!(
        xml.contains("<testsuite name=\""),
        "verify wrote no JUnit: {xml}"
    );
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "verify exit code {code:?}");
    (code == Some(0), failures(&xml))
}

/// Verify must fail, with exactly these `(host, check)` among its failures
/// (each with `evidence` in its text) and no failure on a host not listed.
pub fn verify_fails(tb: &Testbed, lab: &str, scenario: &str, expected: &[(&str, &str, &str)]) {
    let (passed, failed) = verify(tb, lab, scenario);
    assert!(!passed, "{scenario} verify passed although broken");
    for (host, check, evidence) in expected {
        let class = format!("{scenario}.{host}");
        let hit = failed.iter().find(|(c, n, _)| *c == class && n == check);
        let Some((_, _, text)) = hit else {
            panic!("expected `{check}` to fail on {host}; failures: {failed:#?}");
        };
        assert!(
            text.contains(evidence),
            "`{check}` on {host}: evidence `{evidence}` missing in {text}"
        );
    }
    for (class, name, _) in &failed {
        assert!(
            expected
                .iter()
                .any(|(h, _, _)| *class == format!("{scenario}.{h}")),
            "unexpected failure {class}: {name}"
        );
    }
}

pub fn verify_passes(tb: &Testbed, lab: &str, scenario: &str) {
    let (passed, failed) = verify(tb, lab, scenario);
    assert!(passed && failed.is_empty(), "{scenario}: {failed:#?}");
}
