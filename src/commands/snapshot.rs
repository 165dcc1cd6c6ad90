//! `kubelab snapshot LAB save|revert|list|delete`: snapshots of the whole
//! lab (see [`crate::provision::snapshot`]).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::{Context, fail, lab_and_runtime};
use crate::cli::SnapshotAction;
use crate::provision::snapshot::{self, LabSnapshot};

pub fn run(path: &Path, action: SnapshotAction, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let named = match &action {
        SnapshotAction::Save { name, .. }
        | SnapshotAction::Revert { name, .. }
        | SnapshotAction::Delete { name } => Some(name.as_str()),
        SnapshotAction::List => None,
    };
    if let Some(Err(e)) = named.map(snapshot::check_name) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let l = &lab.name;
    // each action: its JSON event and its lines for people
    let (command, done) = match action {
        SnapshotAction::Save { name, disk_only } => (
            "snapshot save",
            rt.block_on(snapshot::save(&lab, &name, disk_only)).map(|s| {
                (
                    json!({"event": "snapshot_saved", "lab": l, "snapshot": s.snapshot,
                        "paused_secs": s.paused_secs, "secs": s.secs}),
                    format!(
                        "lab {l}: snapshot {} of {} VM(s) ({}), VMs paused {:.1}s, {:.1}s in all\n",
                        s.snapshot.name,
                        s.snapshot.vms.len(),
                        s.snapshot.state,
                        s.paused_secs,
                        s.secs
                    ),
                )
            }),
        ),
        SnapshotAction::Revert { name, timeout } => (
            "snapshot revert",
            rt.block_on(snapshot::revert(&lab, &name, Duration::from_secs(timeout)))
                .map(|r| {
                    let mut text = format!(
                        "lab {l}: back to snapshot {}, every VM answers SSH after {:.1}s\n",
                        r.snapshot, r.secs
                    );
                    if !r.clock_not_set.is_empty() {
                        text.push_str(&format!(
                            "warning: the clock of {} is still the snapshot's (no guest agent answered)\n",
                            r.clock_not_set.join(", ")
                        ));
                    }
                    (
                        json!({"event": "snapshot_reverted", "lab": l, "snapshot": r.snapshot,
                            "secs": r.secs, "clock_not_set": r.clock_not_set}),
                        text,
                    )
                }),
        ),
        SnapshotAction::List => (
            "snapshot list",
            rt.block_on(snapshot::list(&lab)).map(|list| {
                (
                    json!({"event": "snapshots", "lab": l, "snapshots": list}),
                    table(&list),
                )
            }),
        ),
        SnapshotAction::Delete { name } => (
            "snapshot delete",
            rt.block_on(snapshot::delete(&lab, &name)).map(|vms| {
                (
                    json!({"event": "snapshot_deleted", "lab": l, "snapshot": name, "vms": vms}),
                    format!("lab {l}: snapshot {name} deleted from {} VM(s)\n", vms.len()),
                )
            }),
        ),
    };
    match done {
        Ok((event, text)) => {
            if ctx.json {
                println!("{event}");
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(ctx, command, &e),
    }
}

/// One line per snapshot: name, when, state, VMs.
pub fn table(list: &[LabSnapshot]) -> String {
    if list.is_empty() {
        return "no snapshots\n".into();
    }
    list.iter()
        .map(|s| {
            let missing = if s.missing.is_empty() {
                String::new()
            } else {
                format!(", not on {}", s.missing.join(", "))
            };
            format!(
                "{}  {}  {}  {} VM(s){missing}\n",
                s.name,
                crate::state::utc_stamp_secs(s.created),
                s.state,
                s.vms.len()
            )
        })
        .collect()
}
