//! `file`, `copy`, `template`, `line`, `fetch`.

use super::{Outcome, Target, assign, exec, quote, run_converge};
use crate::playbook::modules::{CopyArgs, FetchArgs, FileArgs, FileState, LineArgs, TemplateArgs};
use crate::transport::{Command, ExitStatus, Output, TransportError, Upload};
use crate::values::{Mode, Presence, Text};

/// A path's state: what it is, its mode and owner, a regular file's content.
#[derive(Debug)]
pub(super) enum PathState {
    Absent,
    Directory,
    File {
        mode: u32,
        user: String,
        group: String,
        content: Vec<u8>,
    },
}

/// One round trip: stat and content (none when fetched ahead with the
/// states of the steps around, see [`super::prefetch`]).
async fn read_state(
    target: &Target<'_>,
    path: &str,
) -> Result<Result<PathState, String>, TransportError> {
    if let Some(state) = target.prefetched.take_state(path, target.become_root) {
        return Ok(Ok(state));
    }
    let script = format!(
        "p={}\nif [ -d \"$p\" ]; then echo directory\nelif [ -e \"$p\" ]; then stat -c 'file %a %U %G' -- \"$p\" && exec cat -- \"$p\"\nelse echo absent; fi\n",
        quote(path)
    );
    let out = exec(target, Command::Script(script), None).await?;
    if !out.status.success() {
        return Ok(Err(format!(
            "reading {path}: {}: {}",
            out.status,
            out.stderr_str().trim()
        )));
    }
    let bytes = out.stdout;
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let content = bytes.get(split + 1..).unwrap_or_default().to_vec();
    let mut words = head.split_whitespace();
    Ok(match words.next() {
        Some("absent") => Ok(PathState::Absent),
        Some("directory") => Ok(PathState::Directory),
        Some("file") => {
            let mode = words
                .next()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0);
            let user = words.next().unwrap_or("").to_string();
            let group = words.next().unwrap_or("").to_string();
            Ok(PathState::File {
                mode,
                user,
                group,
                content,
            })
        }
        _ => Err(format!("reading {path}: unexpected answer `{head}`")),
    })
}

fn owner_matches(want: &str, user: &str, group: &str) -> bool {
    match want.split_once(':') {
        Some((u, g)) => (u.is_empty() || u == user) && (g.is_empty() || g == group),
        None => want == user,
    }
}

/// Unified diff of two contents (text), or a note for binary content.
pub fn diff(path: &str, old: &[u8], new: &[u8]) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(o), Ok(n)) => similar::TextDiff::from_lines(o, n)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{path} (before)"), &format!("{path} (after)"))
            .to_string(),
        _ => format!(
            "binary content of {path} differs ({} → {} bytes)\n",
            old.len(),
            new.len()
        ),
    }
}

/// Make `path` hold `content` with `mode`/`owner`: one read, at most one write.
async fn converge_content(
    target: &Target<'_>,
    path: &str,
    state: PathState,
    content: Vec<u8>,
    mode: Option<Mode>,
    owner: Option<&Text>,
) -> Result<Outcome, TransportError> {
    let mode = match mode.map(Mode::get).transpose() {
        Ok(m) => m,
        Err(e) => return Ok(Outcome::failed(e)),
    };
    let owner = owner.map(|o| o.as_str().to_string());
    let (old, cur_mode, content_differs, owner_differs) = match &state {
        PathState::Directory => return Ok(Outcome::failed(format!("{path} is a directory"))),
        PathState::Absent => (Vec::new(), None, true, owner.is_some()),
        PathState::File {
            mode,
            user,
            group,
            content: old,
        } => (
            old.clone(),
            Some(*mode),
            *old != content,
            owner
                .as_deref()
                .is_some_and(|o| !owner_matches(o, user, group)),
        ),
    };
    let mode_differs = match (mode, cur_mode) {
        (Some(want), Some(have)) => want != have,
        _ => false,
    };
    let mut o = Outcome::changed(content_differs || mode_differs || owner_differs);
    if content_differs {
        o.diff = Some(diff(path, &old, &content));
    }
    let mut notes = Vec::new();
    if matches!(state, PathState::Absent) {
        notes.push("create".to_string());
    } else if content_differs {
        notes.push("content".to_string());
    }
    if mode_differs {
        notes.push(format!(
            "mode {:o} → {:o}",
            cur_mode.unwrap_or(0),
            mode.unwrap_or(0)
        ));
    }
    if owner_differs {
        notes.push(format!("owner → {}", owner.as_deref().unwrap_or("")));
    }
    o.msg = notes.join(", ");
    if target.check || !o.changed {
        return Ok(o);
    }
    if content_differs {
        target
            .transport
            .write_file(Upload {
                path: path.to_string(),
                content,
                mode: mode.or(cur_mode).unwrap_or(0o644),
                owner,
                become_root: target.become_root,
            })
            .await?;
        return Ok(o);
    }
    let mut args = Vec::new();
    if let Some(m) = mode.filter(|_| mode_differs) {
        args.push(format!("chmod {:o} -- {}", m, quote(path)));
    }
    if let Some(ow) = owner.filter(|_| owner_differs) {
        args.push(format!("chown -- {} {}", quote(&ow), quote(path)));
    }
    let out = exec(target, Command::Script(args.join(" && ")), None).await?;
    if !out.status.success() {
        return Ok(Outcome::failed(format!(
            "{path}: {}",
            out.stderr_str().trim()
        )));
    }
    Ok(o)
}

async fn put(
    target: &Target<'_>,
    path: &str,
    content: Vec<u8>,
    mode: Option<Mode>,
    owner: Option<&Text>,
) -> Result<Outcome, TransportError> {
    match read_state(target, path).await? {
        Ok(state) => converge_content(target, path, state, content, mode, owner).await,
        Err(e) => Ok(Outcome::failed(e)),
    }
}

pub async fn copy(a: &CopyArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let bytes = match (&a.content, &a.src) {
        (Some(c), None) => c.as_str().as_bytes().to_vec(),
        (None, Some(src)) => match std::fs::read(src.as_str()) {
            Ok(b) => b,
            Err(e) => return Ok(Outcome::failed(format!("copy: reading {src} here: {e}"))),
        },
        _ => return Ok(Outcome::failed(crate::playbook::modules::COPY_SOURCE)),
    };
    put(target, a.dest.as_str(), bytes, a.mode, a.owner.as_ref()).await
}

pub async fn template(a: &TemplateArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let rendered = match target.templates.render_file(a.src.as_str(), target.context) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::failed(format!("template {}: {e}", a.src))),
    };
    put(
        target,
        a.dest.as_str(),
        rendered.into_bytes(),
        a.mode,
        a.owner.as_ref(),
    )
    .await
}

/// The new content of a file after ensuring (or removing) a line.
pub fn edit_lines(old: &str, line: &str, regexp: Option<&regex::Regex>, state: Presence) -> String {
    let original: Vec<&str> = old.lines().collect();
    let mut lines = original.clone();
    let matches = |l: &str| match regexp {
        Some(r) => r.is_match(l),
        None => l == line,
    };
    match state {
        Presence::Absent => lines.retain(|l| !matches(l)),
        Presence::Present => {
            let found = match regexp {
                Some(r) => lines.iter().rposition(|l| r.is_match(l)),
                None => None,
            };
            match found {
                Some(i) => lines[i] = line,
                None => {
                    if !lines.contains(&line) {
                        lines.push(line);
                    }
                }
            }
        }
    }
    if lines == original {
        return old.to_string();
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

pub async fn line(a: &LineArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let regexp = match a
        .regexp
        .as_ref()
        .map(|r| regex::Regex::new(r.as_str()))
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::failed(format!("line: bad regexp: {e}"))),
    };
    let create = match a.create.map(|c| c.get()).transpose() {
        Ok(c) => c.unwrap_or(false),
        Err(e) => return Ok(Outcome::failed(e)),
    };
    let path = a.path.as_str();
    let state = match read_state(target, path).await? {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::failed(e)),
    };
    let old = match &state {
        PathState::File { content, .. } => match std::str::from_utf8(content) {
            Ok(t) => t.to_string(),
            Err(_) => return Ok(Outcome::failed(format!("{path} is not a text file"))),
        },
        PathState::Absent if a.state == Presence::Absent => return Ok(Outcome::ok()),
        PathState::Absent if create => String::new(),
        PathState::Absent => {
            return Ok(Outcome::failed(format!(
                "{path} does not exist (set create: true to create it)"
            )));
        }
        PathState::Directory => return Ok(Outcome::failed(format!("{path} is a directory"))),
    };
    let new = edit_lines(&old, a.line.as_str(), regexp.as_ref(), a.state);
    converge_content(
        target,
        path,
        state,
        new.into_bytes(),
        a.mode,
        a.owner.as_ref(),
    )
    .await
}

/// The check-and-apply script body of one `file` item.
fn file_body(a: &FileArgs) -> Result<String, String> {
    let mode = a.mode.map(Mode::get).transpose()?;
    let mut s = assign("p", a.path.as_str());
    match a.state {
        FileState::Directory => s.push_str(
            "if [ ! -d \"$p\" ]; then\n  if [ -e \"$p\" ]; then echo \"$p exists and is not a directory\" >&2; exit 1; fi\n  act mkdir -p -- \"$p\"\nfi\n",
        ),
        FileState::Absent => s.push_str("if [ -e \"$p\" ] || [ -L \"$p\" ]; then act rm -rf -- \"$p\"; fi\n"),
        FileState::Touch => s.push_str("if [ ! -e \"$p\" ]; then act touch -- \"$p\"; fi\n"),
        FileState::File => s.push_str("if [ ! -e \"$p\" ]; then echo \"$p does not exist\" >&2; exit 1; fi\n"),
        FileState::Link => {
            let Some(src) = &a.src else {
                return Err("file: state link needs src (the link target)".to_string());
            };
            s.push_str(&assign("src", src.as_str()));
            s.push_str("if [ ! -L \"$p\" ] || [ \"$(readlink -- \"$p\")\" != \"$src\" ]; then act ln -sfn -- \"$src\" \"$p\"; fi\n");
        }
    }
    if !matches!(a.state, FileState::Absent | FileState::Link) {
        if let Some(m) = mode {
            s.push_str(&format!(
                "if [ -e \"$p\" ] && [ \"$(stat -c %a -- \"$p\")\" != {m:o} ]; then act chmod {m:o} -- \"$p\"; fi\n"
            ));
        }
        if let Some(owner) = &a.owner {
            let fmt = if owner.as_str().contains(':') {
                "%U:%G"
            } else {
                "%U"
            };
            s.push_str(&assign("owner", owner.as_str()));
            s.push_str(&format!(
                "if [ ! -e \"$p\" ] || [ \"$(stat -c {fmt} -- \"$p\")\" != \"$owner\" ]; then act chown -- \"$owner\" \"$p\"; fi\n"
            ));
        }
    }
    Ok(s)
}

/// Whether a `file` item is known to hold already from the state read
/// ahead (see [`super::prefetch`]); then nothing runs on the host. Only
/// `state: directory` is decided here, with exactly the script's tests:
/// a directory (`[ -d ]`), whose `stat` mode and owner are the wanted ones.
/// Anything else, or nothing read ahead, runs the check-and-apply script.
fn holds_already(a: &FileArgs, target: &Target<'_>) -> bool {
    if a.state != FileState::Directory {
        return false;
    }
    let Ok(mode) = a.mode.map(Mode::get).transpose() else {
        return false;
    };
    let Some(Some(stat)) = target
        .prefetched
        .take_stat(a.path.as_str(), target.become_root)
    else {
        return false;
    };
    let owner_holds = a.owner.as_ref().is_none_or(|o| {
        let have = if o.as_str().contains(':') {
            format!("{}:{}", stat.user, stat.group)
        } else {
            stat.user.clone()
        };
        have == o.as_str()
    });
    stat.directory && mode.is_none_or(|m| m == stat.mode) && owner_holds
}

/// Every item held already (see [`holds_already`]): their outcomes, with no
/// round trip. Otherwise `None`, and the answers read ahead for these paths
/// and the directories above them are forgotten: the script about to run
/// may create them.
fn all_hold_already(items: &[&FileArgs], target: &Target<'_>) -> Option<Vec<Outcome>> {
    let mut all = true;
    for a in items {
        // Every item's answer is taken, also after a first miss.
        all &= holds_already(a, target);
    }
    if all {
        // As the script's answer would be: exit code 0, nothing changed.
        let held = Outcome {
            rc: Some(0),
            ..Outcome::ok()
        };
        return Some(items.iter().map(|_| held.clone()).collect());
    }
    for a in items {
        target.prefetched.forget_path_and_above(a.path.as_str());
    }
    None
}

pub async fn file(a: &FileArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    if let Some(mut held) = all_hold_already(&[a], target) {
        return Ok(held.remove(0));
    }
    match file_body(a) {
        Ok(body) => run_converge(target, &body).await,
        Err(e) => Ok(Outcome::failed(e)),
    }
}

/// Ends each item's output (stdout: with its exit code) in a batch.
const ITEM_END: &str = "kl-item-end";

/// Several `file` items (a loop) in ONE round trip: each item's script runs
/// in its own subshell, in order, and the batch stops at the first failing
/// item, as item-by-item execution would. One outcome per item that ran.
pub async fn file_batch(
    items: &[&FileArgs],
    target: &Target<'_>,
) -> Result<Vec<Outcome>, TransportError> {
    if let Some(held) = all_hold_already(items, target) {
        return Ok(held);
    }
    let mut script = super::prelude(target.check);
    let mut bodies = Vec::with_capacity(items.len());
    // An item that cannot be turned into a script fails; the items before
    // it still run, like one by one.
    let mut invalid = None;
    for a in items {
        match file_body(a) {
            Ok(body) => bodies.push(body),
            Err(e) => {
                invalid = Some(Outcome::failed(e));
                break;
            }
        }
    }
    if bodies.is_empty() {
        return Ok(invalid.into_iter().collect());
    }
    for body in &bodies {
        script.push_str("(\n");
        script.push_str(body);
        script.push_str(super::EPILOGUE);
        script.push_str(&format!(
            ")\nkl_rc=$?; echo \"{ITEM_END} $kl_rc\"; echo {ITEM_END} >&2; [ \"$kl_rc\" = 0 ] || exit \"$kl_rc\"\n"
        ));
    }
    let out = exec(target, Command::Script(script), None).await?;
    let stdout = out.stdout_str();
    let stderr = out.stderr_str();
    let stderr_end = format!("{ITEM_END}\n");
    let mut err_parts = stderr.split(stderr_end.as_str());
    let mut ran = Vec::with_capacity(bodies.len());
    let mut item_stdout = String::new();
    for line in stdout.lines() {
        match line.strip_prefix(ITEM_END).map(str::trim) {
            Some(code) => {
                let status = code.parse().map_or(ExitStatus::Code(-1), ExitStatus::Code);
                ran.push(Output {
                    status,
                    stdout: std::mem::take(&mut item_stdout).into_bytes(),
                    stderr: err_parts.next().unwrap_or_default().as_bytes().to_vec(),
                });
            }
            None => {
                item_stdout.push_str(line);
                item_stdout.push('\n');
            }
        }
    }
    let all_reported = ran.len() == bodies.len();
    let last_failed = ran.last().is_some_and(|o| !o.status.success());
    if !all_reported && !last_failed {
        // The batch ended without a word on the next item (killed, …):
        // that item failed with whatever the batch left.
        ran.push(Output {
            status: out.status.clone(),
            stdout: item_stdout.into_bytes(),
            stderr: err_parts.collect::<Vec<_>>().join("").into_bytes(),
        });
    }
    let mut outcomes: Vec<Outcome> = ran.iter().map(super::converge_outcome).collect();
    if all_reported && !outcomes.iter().any(|o| o.failed) {
        outcomes.extend(invalid);
    }
    Ok(outcomes)
}

pub async fn fetch(a: &FetchArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    match target
        .transport
        .read_file(a.path.as_str(), target.become_root)
        .await?
    {
        // With `dest` the content is in that file, and not registered:
        // fetched credentials then never pass through variables (nor, one
        // line at a time, into the redactor's list).
        Some(bytes) => Ok(match &a.dest {
            Some(dest) => keep_locally(dest.as_str(), &bytes, a.mode, target.check),
            None => {
                let mut o = Outcome::ok();
                o.data.insert(
                    "content".into(),
                    serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                );
                o
            }
        }),
        None => Ok(Outcome::failed(format!("{} does not exist", a.path))),
    }
}

/// Write fetched bytes to a local file when they differ (or its mode does).
fn keep_locally(dest: &str, bytes: &[u8], mode: Option<Mode>, check: bool) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let mode = match mode.map(Mode::get).transpose() {
        Ok(m) => m.unwrap_or(0o600),
        Err(e) => return Outcome::failed(e),
    };
    let path = std::path::Path::new(dest);
    let current = std::fs::read(path).ok();
    let current_mode = std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777);
    let content_differs = current.as_deref() != Some(bytes);
    let mode_differs = current_mode != Some(mode);
    if !content_differs && !mode_differs {
        return Outcome::ok();
    }
    let mut o = Outcome::changed(true);
    o.msg = match (current.is_none(), content_differs) {
        (true, _) => format!("create {dest}"),
        (false, true) => format!("update {dest}"),
        (false, false) => format!("mode of {dest} → {mode:o}"),
    };
    if check {
        return o;
    }
    let written = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if content_differs {
            // A new file is made with the final mode from the start, so
            // credentials are never readable by others, even briefly.
            let tmp = path.with_extension("kubelab-new");
            let mut f = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(&mut f, mode);
            let mut file = f.write(true).create(true).truncate(true).open(&tmp)?;
            std::io::Write::write_all(&mut file, bytes)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&tmp, path)?;
        } else {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => o,
        Err(e) => Outcome::failed(format!("writing {dest} here: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_lines() {
        let r = regex::Regex::new("^port=").unwrap();
        assert_eq!(
            edit_lines("a\nb\n", "c", None, Presence::Present),
            "a\nb\nc\n"
        );
        assert_eq!(edit_lines("a\nc\n", "c", None, Presence::Present), "a\nc\n");
        assert_eq!(edit_lines("", "c", None, Presence::Present), "c\n");
        assert_eq!(
            edit_lines("port=1\nx\n", "port=2", Some(&r), Presence::Present),
            "port=2\nx\n"
        );
        assert_eq!(
            edit_lines("x\n", "port=2", Some(&r), Presence::Present),
            "x\nport=2\n"
        );
        assert_eq!(
            edit_lines("a\nport=1\n", "", Some(&r), Presence::Absent),
            "a\n"
        );
        assert_eq!(edit_lines("a\nb", "a", None, Presence::Present), "a\nb");
    }

    #[test]
    fn owners() {
        assert!(owner_matches("root", "root", "wheel"));
        assert!(owner_matches("root:wheel", "root", "wheel"));
        assert!(!owner_matches("root:root", "root", "wheel"));
    }
}
