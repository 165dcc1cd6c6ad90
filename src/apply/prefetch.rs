//! Answers fetched ahead: the read-only part of several consecutive steps
//! of one host (the state of the files they manage, the output of
//! read-only commands) asked in ONE remote script instead of one round
//! trip — and one remote shell — per step.
//!
//! At this size the cost of a step is not kubelab's work but the server's:
//! every `exec` is a channel, a fork and a shell on the host. The executor
//! decides which steps may share a script (see `executor::prefetch_ahead`);
//! this module runs it and keeps the answers. Each step then runs exactly
//! as alone, in order, with its own result, diff and failure, and takes its
//! answer from here instead of asking the host. An answer is used once.
//! Whatever goes wrong while prefetching (the host does not answer, a file
//! changes between `stat` and `cat`, an unreadable file) leaves no answer:
//! the steps ask for themselves and report their own errors.

use std::collections::HashMap;
use std::sync::Mutex;

use super::files::PathState;
use super::{Target, exec};
use crate::transport::{Command, ExitStatus, Output, TransportError, quote};

/// Answers for the coming steps of one host, keyed by what a step would
/// have asked (a path, a command line) and whether it runs as root.
#[derive(Debug, Default)]
pub struct Prefetched {
    states: Mutex<HashMap<(String, bool), PathState>>,
    commands: Mutex<HashMap<(String, bool), Output>>,
}

impl Prefetched {
    pub fn is_empty(&self) -> bool {
        lock(&self.states).is_empty() && lock(&self.commands).is_empty()
    }

    /// Drops answers nobody took (the steps they were for did not ask).
    pub fn clear(&self) {
        lock(&self.states).clear();
        lock(&self.commands).clear();
    }

    /// How many answers are waiting (for tests and the debug log).
    pub fn len(&self) -> usize {
        lock(&self.states).len() + lock(&self.commands).len()
    }

    pub(super) fn take_state(&self, path: &str, become_root: bool) -> Option<PathState> {
        lock(&self.states).remove(&(path.to_string(), become_root))
    }

    pub(super) fn take_command(&self, command: &Command, become_root: bool) -> Option<Output> {
        lock(&self.commands).remove(&(command.to_shell(), become_root))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a map half-updated: inserts are whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A marker no command output contains by chance: fixed text plus this
/// run's process id and the time in nanoseconds.
fn nonce_marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("kl-end-{}-{nanos}", std::process::id())
}

/// The state of every path in ONE script and three processes whatever the
/// number of paths (the shell, one `stat`, one `cat`): existence and type
/// from shell built-ins, mode, owner and size of the regular files from one
/// `stat`, their contents from one `cat`, split by those sizes.
pub async fn states(paths: &[String], target: &Target<'_>) -> Result<(), TransportError> {
    if paths.is_empty() {
        return Ok(());
    }
    let words: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    let script = format!(
        "set --\n\
         for p in {}; do\n\
         \x20 if [ -d \"$p\" ]; then echo directory\n\
         \x20 elif [ -e \"$p\" ]; then echo file; set -- \"$@\" \"$p\"\n\
         \x20 else echo absent; fi\n\
         done\n\
         echo kl-stat\n\
         if [ $# -gt 0 ]; then stat -c '%a %U %G %s' -- \"$@\" || exit; fi\n\
         echo kl-content\n\
         if [ $# -gt 0 ]; then exec cat -- \"$@\"; fi\n",
        words.join(" ")
    );
    let out = exec(target, Command::Script(script), None).await?;
    if !out.status.success() {
        return Ok(());
    }
    if let Some(found) = parse_states(paths.len(), &out.stdout) {
        let mut map = lock(&target.prefetched.states);
        for (path, state) in paths.iter().zip(found) {
            map.insert((path.clone(), target.become_root), state);
        }
    }
    Ok(())
}

/// `None` when the answer is not exactly what the script prints (a file
/// changed size between `stat` and `cat`, …).
fn parse_states(count: usize, stdout: &[u8]) -> Option<Vec<PathState>> {
    let mut rest = stdout;
    let mut next_line = || -> Option<String> {
        let end = rest.iter().position(|b| *b == b'\n')?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
        Some(line)
    };
    let kinds: Vec<String> = (0..count).map(|_| next_line()).collect::<Option<_>>()?;
    if next_line()? != "kl-stat" {
        return None;
    }
    let mut files = Vec::new();
    for kind in &kinds {
        if kind == "file" {
            let line = next_line()?;
            let mut words = line.split(' ');
            let mode = u32::from_str_radix(words.next()?, 8).ok()?;
            let user = words.next()?.to_string();
            let group = words.next()?.to_string();
            let size: usize = words.next()?.parse().ok()?;
            files.push((mode, user, group, size));
        }
    }
    if next_line()? != "kl-content" {
        return None;
    }
    if files.iter().map(|f| f.3).sum::<usize>() != rest.len() {
        return None;
    }
    let mut files = files.into_iter();
    kinds
        .iter()
        .map(|kind| match kind.as_str() {
            "absent" => Some(PathState::Absent),
            "directory" => Some(PathState::Directory),
            "file" => {
                let (mode, user, group, size) = files.next()?;
                let (content, tail) = rest.split_at(size);
                rest = tail;
                Some(PathState::File {
                    mode,
                    user,
                    group,
                    content: content.to_vec(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Read-only commands in ONE script, in order, each in its own subshell
/// (a `cd` or `set` of one does not reach the next), stopping at the first
/// that fails, as step-by-step execution would. Each command's exit code,
/// output and error output are kept apart by a marker.
pub async fn commands(commands: &[Command], target: &Target<'_>) -> Result<(), TransportError> {
    if commands.is_empty() {
        return Ok(());
    }
    let marker = nonce_marker();
    let mut script = String::new();
    for c in commands {
        // A quoted argument vector cannot break the script's syntax (a
        // free-form script could, and would then fail the wrong step).
        debug_assert!(matches!(c, Command::Argv(_)));
        script.push_str(&format!(
            "( {} ); kl_rc=$?; printf '\\n{marker} %s\\n' \"$kl_rc\"; printf '\\n{marker}\\n' >&2; \
             [ \"$kl_rc\" = 0 ] || exit \"$kl_rc\"\n",
            c.to_shell()
        ));
    }
    let out = exec(target, Command::Script(script), None).await?;
    let found = split_outputs(&out, &marker, commands.len());
    let mut map = lock(&target.prefetched.commands);
    for (command, output) in commands.iter().zip(found) {
        map.insert((command.to_shell(), target.become_root), output);
    }
    Ok(())
}

/// The outputs of the commands that ran, in order. A command that ended
/// the whole script (`exit` is a built-in) gets the script's status and
/// whatever it printed after the last marker, as when it ran alone.
fn split_outputs(out: &Output, marker: &str, count: usize) -> Vec<Output> {
    let out_mark = format!("\n{marker} ");
    let err_mark = format!("\n{marker}\n");
    let mut stdout = out.stdout.as_slice();
    let mut stderr = out.stderr.as_slice();
    let mut found = Vec::with_capacity(count);
    while found.len() < count {
        let Some(at) = find(stdout, out_mark.as_bytes()) else {
            break;
        };
        let after = &stdout[at + out_mark.len()..];
        let Some(eol) = after.iter().position(|b| *b == b'\n') else {
            break;
        };
        let Ok(code) = String::from_utf8_lossy(&after[..eol]).parse::<i32>() else {
            break;
        };
        let err_at = find(stderr, err_mark.as_bytes()).unwrap_or(stderr.len());
        found.push(Output {
            status: ExitStatus::Code(code),
            stdout: stdout[..at].to_vec(),
            stderr: stderr[..err_at].to_vec(),
        });
        stdout = &after[eol + 1..];
        stderr = stderr.get(err_at + err_mark.len()..).unwrap_or_default();
        if code != 0 {
            return found;
        }
    }
    if found.len() < count && !out.status.success() {
        found.push(Output {
            status: out.status.clone(),
            stdout: stdout.to_vec(),
            stderr: stderr.to_vec(),
        });
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_split_by_sizes() {
        let out =
            b"absent\nfile\ndirectory\nfile\nkl-stat\n644 root root 3\n600 a b 0\nkl-content\nab\n";
        let s = parse_states(4, out).unwrap();
        assert!(matches!(s[0], PathState::Absent));
        assert!(
            matches!(&s[1], PathState::File { mode: 0o644, content, .. } if content == b"ab\n")
        );
        assert!(matches!(s[2], PathState::Directory));
        assert!(
            matches!(&s[3], PathState::File { mode: 0o600, user, content, .. } if user == "a" && content.is_empty())
        );
    }

    #[test]
    fn states_reject_a_size_that_changed() {
        let out = b"file\nkl-stat\n644 root root 3\nkl-content\nabcd";
        assert!(parse_states(1, out).is_none());
        assert!(parse_states(2, b"file\nkl-stat\n").is_none());
    }

    #[test]
    fn outputs_split_by_marker_and_stop_at_a_failure() {
        let m = "kl-end-1-2";
        let out = Output {
            status: ExitStatus::Code(3),
            stdout: format!("a\n\n{m} 0\nno newline\n{m} 3\n").into_bytes(),
            stderr: format!("\n{m}\nboom\n\n{m}\n").into_bytes(),
        };
        let o = split_outputs(&out, m, 3);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].stdout, b"a\n");
        assert_eq!(o[0].status, ExitStatus::Code(0));
        assert!(o[0].stderr.is_empty());
        assert_eq!(o[1].stdout, b"no newline");
        assert_eq!(o[1].stderr, b"boom\n");
        assert_eq!(o[1].status, ExitStatus::Code(3));
    }

    #[test]
    fn a_command_that_ends_the_script_gets_its_status() {
        let m = "kl-end-1-2";
        let out = Output {
            status: ExitStatus::Code(7),
            stdout: format!("x\n\n{m} 0\nhalf").into_bytes(),
            stderr: format!("\n{m}\nerr").into_bytes(),
        };
        let o = split_outputs(&out, m, 3);
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].status, ExitStatus::Code(7));
        assert_eq!(o[1].stdout, b"half");
        assert_eq!(o[1].stderr, b"err");
    }
}
