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
    /// Files whose content a step converges (`copy`, `template`, `line`).
    states: Mutex<HashMap<(String, bool), PathState>>,
    /// Paths a `file` step manages: type, mode and owner (`None`: absent).
    stats: Mutex<HashMap<(String, bool), Option<PathStat>>>,
    commands: Mutex<HashMap<(String, bool), Output>>,
}

/// What `stat` says of an existing path (not following a symlink, as the
/// `file` module's own check does not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PathStat {
    pub directory: bool,
    pub mode: u32,
    pub user: String,
    pub group: String,
}

/// What one script asks the host ahead for a run of steps, in this order:
/// the outputs of read-only commands (run first: no step of the run before
/// them writes anything), then the stat of `stat_paths` and the stat and
/// content of `content_paths`.
#[derive(Debug, Default)]
pub struct Ahead {
    pub commands: Vec<Command>,
    pub stat_paths: Vec<String>,
    pub content_paths: Vec<String>,
}

impl Ahead {
    /// How many answers the script would bring.
    pub fn len(&self) -> usize {
        self.commands.len() + self.stat_paths.len() + self.content_paths.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether a path is asked for already (a second step on a path must
    /// see the first one's change, not the state from before).
    pub fn has_path(&self, path: &str) -> bool {
        self.stat_paths
            .iter()
            .chain(&self.content_paths)
            .any(|p| p == path)
    }
}

impl Prefetched {
    /// Drops answers nobody took (the steps they were for did not ask).
    pub fn clear(&self) {
        lock(&self.states).clear();
        lock(&self.stats).clear();
        lock(&self.commands).clear();
    }

    pub(super) fn take_stat(&self, path: &str, become_root: bool) -> Option<Option<PathStat>> {
        lock(&self.stats).remove(&(path.to_string(), become_root))
    }

    /// Forgets the answers for `path` and every directory above it: a
    /// `mkdir -p` of it may have created them since they were read.
    pub(super) fn forget_path_and_above(&self, path: &str) {
        let above = |p: &str| {
            let p = p.trim_end_matches('/');
            path == p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        lock(&self.states).retain(|(p, _), _| !above(p));
        lock(&self.stats).retain(|(p, _), _| !above(p));
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

/// Asks everything of `ahead` in ONE script. Reading the paths takes three
/// processes whatever their number (the shell, one `stat`, one `cat`):
/// existence and type from shell built-ins, mode, owner and size from one
/// `stat`, the contents from one `cat`, split by those sizes. The commands
/// run as [`commands_script`] says.
pub async fn run(ahead: &Ahead, target: &Target<'_>) -> Result<(), TransportError> {
    if ahead.is_empty() {
        return Ok(());
    }
    let marker = nonce_marker();
    let mut script = commands_script(&ahead.commands, &marker);
    let all: Vec<String> = ahead
        .stat_paths
        .iter()
        .chain(&ahead.content_paths)
        .map(|p| quote(p))
        .collect();
    let contents: Vec<String> = ahead.content_paths.iter().map(|p| quote(p)).collect();
    if !all.is_empty() {
        script.push_str(&format!(
            "set --\n\
             for p in {}; do\n\
             \x20 if [ -d \"$p\" ]; then echo directory; set -- \"$@\" \"$p\"\n\
             \x20 elif [ -e \"$p\" ]; then echo file; set -- \"$@\" \"$p\"\n\
             \x20 else echo absent; fi\n\
             done\n\
             echo kl-stat\n\
             if [ $# -gt 0 ]; then stat -c '%a %U %G %s' -- \"$@\" || exit; fi\n\
             echo kl-content\n",
            all.join(" ")
        ));
    }
    if !contents.is_empty() {
        script.push_str(&format!(
            "set --\n\
             for p in {}; do if [ -e \"$p\" ] && [ ! -d \"$p\" ]; then set -- \"$@\" \"$p\"; fi; done\n\
             if [ $# -gt 0 ]; then exec cat -- \"$@\"; fi\n",
            contents.join(" ")
        ));
    }
    let out = exec(target, Command::Script(script), None).await?;
    let (outputs, rest) = split_outputs(&out, &marker, ahead.commands.len());
    let commands_done =
        outputs.len() == ahead.commands.len() && outputs.iter().all(|o| o.status.success());
    {
        let mut map = lock(&target.prefetched.commands);
        for (command, output) in ahead.commands.iter().zip(outputs) {
            map.insert((command.to_shell(), target.become_root), output);
        }
    }
    if all.is_empty() || !commands_done || !out.status.success() {
        return Ok(());
    }
    let Some((stats, states)) = parse_paths(
        ahead.stat_paths.len(),
        ahead.content_paths.len(),
        &out.stdout[rest..],
    ) else {
        return Ok(());
    };
    let mut map = lock(&target.prefetched.stats);
    for (path, stat) in ahead.stat_paths.iter().zip(stats) {
        map.insert((path.clone(), target.become_root), stat);
    }
    let mut map = lock(&target.prefetched.states);
    for (path, state) in ahead.content_paths.iter().zip(states) {
        map.insert((path.clone(), target.become_root), state);
    }
    Ok(())
}

type PathAnswers = (Vec<Option<PathStat>>, Vec<PathState>);

/// `None` when the answer is not exactly what the script prints (a file
/// changed size between `stat` and `cat`, …).
fn parse_paths(stat_only: usize, with_content: usize, stdout: &[u8]) -> Option<PathAnswers> {
    let mut rest = stdout;
    let mut next_line = || -> Option<String> {
        let end = rest.iter().position(|b| *b == b'\n')?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
        Some(line)
    };
    let count = stat_only + with_content;
    let kinds: Vec<String> = (0..count).map(|_| next_line()).collect::<Option<_>>()?;
    if next_line()? != "kl-stat" {
        return None;
    }
    // Per path: None when absent, else (stat, size).
    let mut found: Vec<Option<(PathStat, usize)>> = Vec::with_capacity(count);
    for kind in &kinds {
        let directory = match kind.as_str() {
            "absent" => {
                found.push(None);
                continue;
            }
            "directory" => true,
            "file" => false,
            _ => return None,
        };
        let line = next_line()?;
        let mut words = line.split(' ');
        let mode = u32::from_str_radix(words.next()?, 8).ok()?;
        let user = words.next()?.to_string();
        let group = words.next()?.to_string();
        let size: usize = words.next()?.parse().ok()?;
        found.push(Some((
            PathStat {
                directory,
                mode,
                user,
                group,
            },
            size,
        )));
    }
    if next_line()? != "kl-content" {
        return None;
    }
    let content_sizes: usize = found[stat_only..]
        .iter()
        .flatten()
        .filter(|(s, _)| !s.directory)
        .map(|(_, size)| size)
        .sum();
    if content_sizes != rest.len() {
        return None;
    }
    let stats = found[..stat_only]
        .iter()
        .map(|f| f.as_ref().map(|(s, _)| s.clone()))
        .collect();
    let states = found[stat_only..]
        .iter()
        .map(|f| match f {
            None => PathState::Absent,
            Some((s, _)) if s.directory => PathState::Directory,
            Some((s, size)) => {
                let (content, tail) = rest.split_at(*size);
                rest = tail;
                PathState::File {
                    mode: s.mode,
                    user: s.user.clone(),
                    group: s.group.clone(),
                    content: content.to_vec(),
                }
            }
        })
        .collect();
    Some((stats, states))
}

/// Read-only commands in the script, in order, each in its own subshell
/// (a `cd` or `set` of one does not reach the next), stopping at the first
/// that fails, as step-by-step execution would. Each command's exit code,
/// output and error output are kept apart by `marker`.
fn commands_script(commands: &[Command], marker: &str) -> String {
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
    script
}

/// The outputs of the commands that ran, in order. A command that ended
/// the whole script (`exit` is a built-in) gets the script's status and
/// whatever it printed after the last marker, as when it ran alone. Also
/// where in stdout the rest of the script's answer starts.
fn split_outputs(out: &Output, marker: &str, count: usize) -> (Vec<Output>, usize) {
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
            return (found, out.stdout.len() - stdout.len());
        }
    }
    if found.len() < count && !out.status.success() {
        found.push(Output {
            status: out.status.clone(),
            stdout: stdout.to_vec(),
            stderr: stderr.to_vec(),
        });
    }
    (found, out.stdout.len() - stdout.len())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_by_sizes() {
        let out = b"directory\nabsent\nabsent\nfile\ndirectory\nfile\nkl-stat\n755 a b 4096\n644 root root 3\n755 r r 9\n600 a b 0\nkl-content\nab\n";
        let (stats, s) = parse_paths(2, 4, out).unwrap();
        assert_eq!(
            stats[0].as_ref().map(|s| (s.directory, s.mode)),
            Some((true, 0o755))
        );
        assert!(stats[1].is_none());
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
    fn paths_reject_a_size_that_changed() {
        let out = b"file\nkl-stat\n644 root root 3\nkl-content\nabcd";
        assert!(parse_paths(0, 1, out).is_none());
        assert!(parse_paths(0, 2, b"file\nkl-stat\n").is_none());
    }

    #[test]
    fn outputs_split_by_marker_and_stop_at_a_failure() {
        let m = "kl-end-1-2";
        let out = Output {
            status: ExitStatus::Code(3),
            stdout: format!("a\n\n{m} 0\nno newline\n{m} 3\n").into_bytes(),
            stderr: format!("\n{m}\nboom\n\n{m}\n").into_bytes(),
        };
        let (o, rest) = split_outputs(&out, m, 3);
        assert_eq!(rest, out.stdout.len());
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
        let (o, _) = split_outputs(&out, m, 3);
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].status, ExitStatus::Code(7));
        assert_eq!(o[1].stdout, b"half");
        assert_eq!(o[1].stderr, b"err");
    }
}
