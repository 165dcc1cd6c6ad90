//! The HTML run report: one self-contained page (no script, no network,
//! no external font) made from a run's event stream — the JSON lines the
//! run log keeps beside it ([`super::events_path`]), the same events
//! `--json` prints, already redacted. A summary, the lab's topology, a
//! timeline of every play per host, and every step with its status,
//! duration and output (failed ones open).

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::markup::escape_xml;

/// What the page says besides the events.
pub struct Page<'a> {
    /// `up labs/ipv6.yaml`.
    pub title: &'a str,
    /// The lab's topology, an SVG document, when the run had a lab.
    pub topology: Option<&'a str>,
    /// Where the run log is.
    pub log: Option<&'a Path>,
    /// The forensics bundle a failed run left.
    pub forensics: Option<&'a Path>,
}

/// The events of a run, from its `.events.jsonl` file (lines that do not
/// parse are skipped: a run cut short may leave half a line).
pub fn read_events(path: &Path) -> std::io::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect())
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn seconds(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 600_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// One step's end, as the page shows it.
struct StepRow<'a> {
    host: &'a str,
    step: &'a str,
    location: &'a str,
    module: &'a str,
    status: &'a str,
    changed: bool,
    start_ms: u64,
    end_ms: u64,
    message: &'a str,
    stdout: &'a str,
    stderr: &'a str,
    diff: &'a str,
}

impl StepRow<'_> {
    fn failed(&self) -> bool {
        self.status == "failed" || self.status == "unreachable"
    }
}

/// A play of one run, its steps in the order they ended.
struct PlayBlock<'a> {
    run: usize,
    playbook: &'a str,
    play: &'a str,
    steps: Vec<StepRow<'a>>,
}

const STYLE: &str = "
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:0;background:#f4f6f8;color:#1d252c}
main{max-width:1220px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:26px 0 8px}
.result{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:bold}
.result.passed{background:#2e8b57}.result.failed{background:#c0392b}
.facts{display:flex;flex-wrap:wrap;gap:8px 24px;margin:10px 0;font-size:14px}
.facts b{display:block;font-size:12px;color:#5f6b76;font-weight:normal}
.card{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:12px;overflow-x:auto}
.topology svg{max-width:100%;height:auto}
.lane{display:flex;align-items:center;margin:3px 0}
.lane .host{width:150px;flex:none;font-family:monospace;font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.track{position:relative;flex:1;height:20px;background:#eef1f4;border-radius:3px}
.bar{position:absolute;top:2px;height:16px;min-width:3px;border-radius:3px;font-size:11px;color:#fff;overflow:hidden;white-space:nowrap;line-height:16px;padding:0 3px;box-sizing:border-box}
.s-ok{background:#6c8ebf}.s-changed{background:#d4a017}.s-failed,.s-unreachable{background:#c0392b}.s-skipped{background:#aab4be}
.axis{display:flex;justify-content:space-between;margin-left:150px;font-size:11px;color:#5f6b76}
details.play{background:#fff;border:1px solid #d5dbe1;border-radius:6px;margin:6px 0}
details.play>summary{padding:8px 12px;cursor:pointer;font-weight:bold}
details.play.failed>summary{color:#c0392b}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{padding:4px 8px;border-top:1px solid #e6eaee;text-align:left;vertical-align:top}
td.status{font-weight:bold;white-space:nowrap}
tr.failed td.status,tr.unreachable td.status{color:#c0392b}tr.changed td.status{color:#a37b00}
td.where{font-family:monospace;font-size:11px;color:#5f6b76}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f8fa;border:1px solid #e6eaee;padding:6px;margin:4px 0;font-size:12px;max-height:360px;overflow:auto}
details.output>summary{cursor:pointer;color:#2f6db5;font-size:12px}
";

/// The page for `events`.
pub fn render(events: &[Value], page: &Page<'_>) -> String {
    let mut blocks: Vec<PlayBlock> = Vec::new();
    let mut run = 0usize;
    let mut playbook = "";
    let mut exit_codes: Vec<i64> = Vec::new();
    let mut runs_started = 0usize;
    let times: Vec<u64> = events
        .iter()
        .filter_map(|e| e.get("time_ms").and_then(Value::as_u64))
        .collect();
    let first = times.iter().copied().min().unwrap_or(0);
    let last = times.iter().copied().max().unwrap_or(first);
    for e in events {
        let time = e.get("time_ms").and_then(Value::as_u64).unwrap_or(first);
        match text(e, "event") {
            "run_start" => {
                runs_started += 1;
                run = runs_started;
                playbook = text(e, "playbook");
            }
            "run_end" => {
                exit_codes.push(e["summary"]["exit_code"].as_i64().unwrap_or(1));
            }
            "step_end" => {
                let play = text(e, "play");
                let duration = e.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
                let row = StepRow {
                    host: text(e, "host"),
                    step: text(e, "step"),
                    location: text(e, "location"),
                    module: text(e, "module"),
                    status: text(e, "status"),
                    changed: e.get("changed").and_then(Value::as_bool).unwrap_or(false),
                    start_ms: time.saturating_sub(duration).max(first),
                    end_ms: time,
                    message: text(e, "message"),
                    stdout: text(e, "stdout"),
                    stderr: text(e, "stderr"),
                    diff: text(e, "diff"),
                };
                match blocks.last_mut() {
                    Some(b) if b.run == run && b.play == play => b.steps.push(row),
                    _ => blocks.push(PlayBlock {
                        run,
                        playbook,
                        play,
                        steps: vec![row],
                    }),
                }
            }
            _ => {}
        }
    }
    let all_steps = || blocks.iter().flat_map(|b| &b.steps);
    let failed_steps = all_steps().filter(|s| s.failed()).count();
    let finished = exit_codes.len() == runs_started;
    let passed = finished && exit_codes.iter().all(|c| *c == 0) && failed_steps == 0;
    let changes = all_steps().filter(|s| s.changed).count();

    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>kubelab {}</title><style>{STYLE}</style></head><body><main>",
        escape_xml(page.title)
    );
    let _ = write!(
        h,
        "<h1>kubelab {} <span class=\"result {}\" id=\"result\">{}</span></h1>",
        escape_xml(page.title),
        if passed { "passed" } else { "failed" },
        if passed {
            "passed"
        } else if finished {
            "failed"
        } else {
            "did not finish"
        }
    );
    let _ = write!(
        h,
        "<div class=\"facts\"><div><b>duration</b>{}</div><div><b>playbooks</b>{runs_started}</div><div><b>steps</b>{}</div><div><b>changed</b>{changes}</div><div><b>failed</b>{failed_steps}</div>",
        seconds(last - first),
        all_steps().count()
    );
    if let Some(log) = page.log {
        let _ = write!(
            h,
            "<div><b>run log</b>{}</div>",
            escape_xml(&log.display().to_string())
        );
    }
    if let Some(bundle) = page.forensics {
        let _ = write!(
            h,
            "<div id=\"forensics\"><b>forensics</b>{}</div>",
            escape_xml(&bundle.display().to_string())
        );
    }
    h.push_str("</div>");

    if let Some(svg) = page.topology {
        let _ = write!(
            h,
            "<h2>Topology</h2><div class=\"card topology\">{svg}</div>"
        );
    }

    // Timeline: one lane per host, a bar per play it ran.
    let mut hosts: Vec<&str> = Vec::new();
    for s in all_steps() {
        if !hosts.contains(&s.host) {
            hosts.push(s.host);
        }
    }
    let span = (last - first).max(1) as f64;
    h.push_str("<h2>Timeline</h2><div class=\"card\" id=\"timeline\">");
    for host in &hosts {
        let _ = write!(
            h,
            "<div class=\"lane\"><span class=\"host\" title=\"{0}\">{0}</span><div class=\"track\">",
            escape_xml(host)
        );
        for b in &blocks {
            let mine: Vec<&StepRow> = b.steps.iter().filter(|s| s.host == *host).collect();
            let (Some(start), Some(end)) = (
                mine.iter().map(|s| s.start_ms).min(),
                mine.iter().map(|s| s.end_ms).max(),
            ) else {
                continue;
            };
            let status = worst(mine.iter().map(|s| s.status));
            let left = (start - first) as f64 / span * 100.0;
            let width = ((end - start) as f64 / span * 100.0).max(0.3);
            let _ = write!(
                h,
                "<div class=\"bar s-{status}\" data-host=\"{}\" data-play=\"{}\" style=\"left:{left:.2}%;width:{width:.2}%\" title=\"{}: {} ({}, {})\">{}</div>",
                escape_xml(host),
                escape_xml(b.play),
                escape_xml(host),
                escape_xml(b.play),
                status,
                seconds(end - start),
                escape_xml(b.play)
            );
        }
        h.push_str("</div></div>");
    }
    let _ = write!(
        h,
        "<div class=\"axis\"><span>0 s</span><span>{}</span><span>{}</span></div></div>",
        seconds((last - first) / 2),
        seconds(last - first)
    );

    // Steps, play by play; failed plays and steps open.
    h.push_str("<h2>Steps</h2>");
    for b in &blocks {
        let failed = b.steps.iter().filter(|s| s.failed()).count();
        let _ = write!(
            h,
            "<details class=\"play{}\"{}><summary>{} — {} ({} step{}, {} changed{})</summary><table><tr><th>host</th><th>step</th><th>status</th><th>time</th><th>where</th></tr>",
            if failed > 0 { " failed" } else { "" },
            if failed > 0 { " open" } else { "" },
            escape_xml(b.play),
            escape_xml(b.playbook),
            b.steps.len(),
            if b.steps.len() == 1 { "" } else { "s" },
            b.steps.iter().filter(|s| s.changed).count(),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        );
        for s in &b.steps {
            let is_failed = s.failed();
            let _ = write!(
                h,
                "<tr class=\"step {}\"><td>{}</td><td>{}",
                s.status,
                escape_xml(s.host),
                escape_xml(s.step)
            );
            let mut output = String::new();
            for (name, body) in [
                ("message", s.message),
                ("stderr", s.stderr),
                ("stdout", s.stdout),
                ("diff", s.diff),
            ] {
                if !body.trim().is_empty() {
                    let _ = write!(
                        output,
                        "<pre class=\"{name}\">{}</pre>",
                        escape_xml(body.trim_end())
                    );
                }
            }
            if !output.is_empty() {
                let _ = write!(
                    h,
                    "<details class=\"output{}\"{}><summary>output</summary>{output}</details>",
                    if is_failed { " failed" } else { "" },
                    if is_failed { " open" } else { "" }
                );
            }
            let _ = write!(
                h,
                "</td><td class=\"status\">{}{}</td><td>{}</td><td class=\"where\">{} {}</td></tr>",
                s.status,
                if s.changed && s.status != "changed" {
                    " (changed)"
                } else {
                    ""
                },
                seconds(s.end_ms - s.start_ms),
                escape_xml(s.module),
                escape_xml(s.location)
            );
        }
        h.push_str("</table></details>");
    }
    h.push_str("</main></body></html>\n");
    h
}

/// The worst of some steps' statuses, as a bar's colour.
fn worst<'a>(statuses: impl Iterator<Item = &'a str>) -> &'static str {
    // Best to worst; an unknown status counts as skipped.
    const ORDER: [&str; 5] = ["skipped", "ok", "changed", "failed", "unreachable"];
    let rank = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(0);
    ORDER[statuses.map(rank).max().unwrap_or(0)]
}

/// The report of the run whose log is `log`, from the events kept beside it.
pub fn report(
    log: &Path,
    title: &str,
    topology: Option<&str>,
    forensics: Option<&Path>,
) -> std::io::Result<String> {
    let events = read_events(&super::events_path(log))?;
    let page = Page {
        title,
        topology,
        log: Some(log),
        forensics,
    };
    Ok(render(&events, &page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_run_opens_its_failed_steps_and_draws_a_bar_per_host_and_play() {
        let events = vec![
            json!({"event": "run_start", "playbook": "p.yaml", "check": false, "hosts": ["a", "b"], "time_ms": 1000}),
            json!({"event": "step_end", "host": "a", "play": "one", "step": "s1", "location": "p.yaml:3:7", "module": "shell", "status": "ok", "changed": false, "duration_ms": 500, "time_ms": 1500}),
            json!({"event": "step_end", "host": "b", "play": "one", "step": "s1", "location": "p.yaml:3:7", "module": "shell", "status": "changed", "changed": true, "duration_ms": 700, "time_ms": 1700}),
            json!({"event": "step_end", "host": "b", "play": "two", "step": "<check> & more", "location": "p.yaml:9:7", "module": "assert", "status": "failed", "changed": false, "duration_ms": 10, "time_ms": 2000, "message": "it <failed>"}),
            json!({"event": "run_end", "summary": {"exit_code": 1}, "time_ms": 2001}),
        ];
        let html = render(
            &events,
            &Page {
                title: "play p.yaml",
                topology: None,
                forensics: None,
                log: None,
            },
        );
        assert!(html.contains("id=\"result\">failed<"));
        assert_eq!(html.matches("class=\"bar ").count(), 3);
        assert!(html.contains("data-host=\"b\" data-play=\"two\""));
        assert!(html.contains("<details class=\"play failed\" open><summary>two"));
        assert!(html.contains("<details class=\"output failed\" open>"));
        assert!(html.contains("it &lt;failed&gt;") && html.contains("&lt;check&gt; &amp; more"));
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
        let ok = render(
            &events[..3],
            &Page {
                title: "t",
                topology: None,
                forensics: None,
                log: None,
            },
        );
        assert!(
            ok.contains("did not finish"),
            "no run_end: the run was cut short"
        );
    }
}
