//! `command`, `shell`, `wait_for`, `assert`.

use std::time::{Duration, Instant};

use super::{Outcome, Target, exec, quote};
use crate::playbook::modules::{AssertArgs, CommandArgs, Probe, ShellArgs, WaitForArgs};
use crate::transport::{Command, Exec, TransportError};
use crate::values::{Seconds, Text};

/// Guards shared by `command` and `shell`: `Some(reason)` when the command
/// need not run.
async fn guard(
    target: &Target<'_>,
    creates: Option<&Text>,
    removes: Option<&Text>,
    unless: Option<&Probe>,
) -> Result<Result<Option<String>, String>, TransportError> {
    if creates.is_none() && removes.is_none() && unless.is_none() {
        return Ok(Ok(None));
    }
    let mut script = String::new();
    if let Some(c) = creates {
        script.push_str(&format!(
            "if [ -e {} ]; then echo creates; exit 0; fi\n",
            quote(c.as_str())
        ));
    }
    if let Some(r) = removes {
        script.push_str(&format!(
            "if [ ! -e {} ]; then echo removes; exit 0; fi\n",
            quote(r.as_str())
        ));
    }
    if let Some(u) = unless {
        let probe = match u {
            Probe::Argv(_) => u.to_command().to_shell(),
            Probe::Script(s) => format!("sh -c {}", quote(s)),
        };
        script.push_str(&format!(
            "if {probe} >/dev/null 2>&1; then echo unless; exit 0; fi\n"
        ));
    }
    script.push_str("exit 10\n");
    let out = exec(target, Command::Script(script), None).await?;
    Ok(match out.status {
        crate::transport::ExitStatus::Code(0) => Ok(Some(match out.stdout_str().trim() {
            "creates" => format!("{} exists", creates.map_or("", |t| t.as_str())),
            "removes" => format!("{} does not exist", removes.map_or("", |t| t.as_str())),
            _ => "the `unless` command succeeded".to_string(),
        })),
        crate::transport::ExitStatus::Code(10) => Ok(None),
        ref other => Err(format!(
            "checking guards: {other}: {}",
            out.stderr_str().trim()
        )),
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_command(
    target: &Target<'_>,
    command: Command,
    creates: Option<&Text>,
    removes: Option<&Text>,
    unless: Option<&Probe>,
    stdin: Option<&Text>,
    timeout: Option<Seconds>,
) -> Result<Outcome, TransportError> {
    match guard(target, creates, removes, unless).await? {
        Err(e) => return Ok(Outcome::failed(e)),
        Ok(Some(reason)) => {
            let mut o = Outcome::ok();
            o.msg = format!("not run: {reason}");
            return Ok(o);
        }
        Ok(None) => {}
    }
    if target.check && !target.run_commands_in_check {
        let mut o = Outcome::changed(true);
        o.msg = format!("would run: {}", command.to_shell());
        return Ok(o);
    }
    let mut req = Exec::new(command).become_root(target.become_root);
    if let Some(s) = stdin {
        req.stdin = Some(s.as_str().as_bytes().to_vec());
    }
    if let Some(t) = timeout {
        match t.get() {
            Ok(d) => req.timeout = Some(d),
            Err(e) => return Ok(Outcome::failed(e)),
        }
    }
    // A read-only command may have run already, with the ones after it, in
    // one script (see `super::prefetch`): its own output and exit code.
    let prefetched = (req.stdin.is_none() && req.timeout.is_none())
        .then(|| {
            target
                .prefetched
                .take_command(&req.command, target.become_root)
        })
        .flatten();
    let out = match prefetched {
        Some(out) => Ok(out),
        None => target.transport.exec(req).await,
    };
    let out = match out {
        Err(TransportError::Timeout { after, .. }) => {
            return Ok(Outcome::failed(format!("timed out after {after:?}")));
        }
        other => other?,
    };
    let mut o = Outcome::changed(true).with_output(&out);
    if !out.status.success() {
        o.msg = format!("{}", out.status);
    }
    Ok(o)
}

pub async fn command(a: &CommandArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    if a.argv.is_empty() {
        return Ok(Outcome::failed("command: argv is empty"));
    }
    let cmd = Command::Argv(a.argv.iter().map(|t| t.0.clone()).collect());
    run_command(
        target,
        cmd,
        a.creates.as_ref(),
        a.removes.as_ref(),
        a.unless.as_ref(),
        a.stdin.as_ref(),
        a.timeout,
    )
    .await
}

pub async fn shell(a: &ShellArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let cmd = Command::Script(a.script.clone());
    run_command(
        target,
        cmd,
        a.creates.as_ref(),
        a.removes.as_ref(),
        a.unless.as_ref(),
        a.stdin.as_ref(),
        a.timeout,
    )
    .await
}

pub async fn wait_for(a: &WaitForArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let timeout = match a.timeout.map(Seconds::get).transpose() {
        Ok(t) => t.unwrap_or(Duration::from_secs(60)),
        Err(e) => return Ok(Outcome::failed(e)),
    };
    let interval = match a.interval.map(Seconds::get).transpose() {
        Ok(t) => t
            .unwrap_or(Duration::from_millis(200))
            .max(Duration::from_millis(10)),
        Err(e) => return Ok(Outcome::failed(e)),
    };
    if !matches!(
        (&a.port, &a.path, &a.command),
        (Some(_), None, None) | (None, Some(_), None) | (None, None, Some(_))
    ) {
        return Ok(Outcome::failed(
            "wait_for needs exactly one of port, path, command",
        ));
    }
    if target.check {
        return Ok(Outcome::skipped("check mode: not waiting"));
    }
    if let Some(port) = a.port {
        let port = match port.get().map(u16::try_from) {
            Ok(Ok(p)) => p,
            _ => return Ok(Outcome::failed("wait_for: port must be 1-65535")),
        };
        let host = a
            .host
            .as_ref()
            .map_or("127.0.0.1", |h| h.as_str())
            .to_string();
        let start = Instant::now();
        loop {
            match target.transport.open_tunnel(&host, port).await {
                Ok(_) => {
                    let mut o = Outcome::ok();
                    o.msg = format!(
                        "{host}:{port} accepts connections after {:?}",
                        start.elapsed()
                    );
                    return Ok(o);
                }
                Err(e) if e.is_unreachable() => return Err(e),
                Err(e) => {
                    if start.elapsed() + interval > timeout {
                        return Ok(Outcome::failed(format!(
                            "{host}:{port} did not accept connections within {timeout:?}: {e}"
                        )));
                    }
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }
    let check = match (&a.path, &a.command) {
        (Some(p), _) => format!("[ -e {} ]", quote(p.as_str())),
        (_, Some(Probe::Argv(_))) => {
            format!(
                "{} >/dev/null 2>&1",
                a.command
                    .as_ref()
                    .map(|c| c.to_command().to_shell())
                    .unwrap_or_default()
            )
        }
        (_, Some(Probe::Script(s))) => format!("sh -c {} >/dev/null 2>&1", quote(s)),
        _ => return Ok(Outcome::failed("wait_for: nothing to wait for")),
    };
    let attempts = (timeout.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(1.0) as u64;
    let script = format!(
        "i=0\nwhile :; do\n  if {check}; then exit 0; fi\n  i=$((i+1))\n  if [ \"$i\" -ge {attempts} ]; then exit 1; fi\n  sleep {}\ndone\n",
        interval.as_secs_f64()
    );
    let req = Exec::new(Command::Script(script))
        .become_root(target.become_root)
        .timeout(timeout + Duration::from_secs(30));
    let out = target.transport.exec(req).await?;
    if out.status.success() {
        Ok(Outcome::ok())
    } else {
        let what = a
            .path
            .as_ref()
            .map_or_else(|| "the command to succeed".to_string(), |p| p.to_string());
        Ok(Outcome::failed(format!(
            "timed out after {timeout:?} waiting for {what}"
        )))
    }
}

pub fn assert(a: &AssertArgs, target: &Target<'_>) -> Outcome {
    for expr in &a.that {
        match target.templates.eval(expr, target.context) {
            Ok(v) if v.is_true() => {}
            Ok(_) => {
                return Outcome::failed(match &a.message {
                    Some(m) => m.to_string(),
                    None => format!("assertion failed: {expr}"),
                });
            }
            Err(e) => return Outcome::failed(format!("assertion `{expr}`: {e}")),
        }
    }
    let mut o = Outcome::ok();
    o.msg = "all assertions passed".into();
    o
}
