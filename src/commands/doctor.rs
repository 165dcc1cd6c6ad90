//! `kubelab doctor LAB`: is the virthost ready for the lab? Each finding with a fix.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::kubernetes::sources;
use crate::lab::Lab;
use crate::provision;
use crate::provision::doctor::{Finding, Severity};
use crate::transport::{ExitStatus, quote};

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let found = rt.block_on(async {
        let mut findings = provision::doctor(&lab).await?;
        findings.extend(kubernetes_downloads(&lab).await);
        Ok::<_, provision::ProvisionError>(findings)
    });
    match found {
        Ok(findings) => {
            let blocking = findings.iter().any(|f| f.severity == Severity::Blocking);
            if ctx.json {
                for f in &findings {
                    println!("{}", serde_json::json!({"event": "finding", "finding": f}));
                }
            } else {
                for f in &findings {
                    let tag = match f.severity {
                        Severity::Ok => "ok     ",
                        Severity::Warning => "warning",
                        Severity::Blocking => "BLOCKER",
                    };
                    println!("{tag} {:16} {}", f.check, f.message);
                    if !f.fix.is_empty() {
                        println!("        {:16} fix: {}", "", f.fix);
                    }
                }
            }
            if blocking {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(ctx, "doctor", &e),
    }
}

/// The check the `kubernetes` stage starts with (`kubernetes/sources`):
/// do the cluster's downloads answer from the first control plane? Only
/// when the lab is up; nothing for labs without Kubernetes.
async fn kubernetes_downloads(lab: &Lab) -> Option<Finding> {
    const CHECK: &str = "k8s downloads";
    let k = lab.kubernetes.as_ref()?;
    let list = sources::sources(k);
    if list.is_empty() {
        return Some(Finding::ok(
            CHECK,
            "air-gapped (kubernetes.airgap_dir): nothing to download",
        ));
    }
    let init = lab.group("control-plane").first()?.name.clone();
    let script = sources::probe_script(&init, &list);
    let argv = ["bash".to_string(), "-c".into(), quote(&script)];
    Some(match provision::run_on_vm(lab, &init, &argv).await {
        Ok(out) if out.status.success() => Finding::ok(
            CHECK,
            format!(
                "{} answer from {init}: {}",
                list.len(),
                list.iter().map(|s| s.host).collect::<Vec<_>>().join(", ")
            ),
        ),
        Ok(out) if out.status == ExitStatus::Code(1) => Finding::bad(
            CHECK,
            Severity::Blocking,
            out.stdout_str().trim(),
            "give the VMs internet access, or set `kubernetes.airgap_dir`",
        ),
        Ok(out) => Finding::bad(
            CHECK,
            Severity::Warning,
            format!(
                "not checked: the probe on {init} failed ({:?}): {}",
                out.status,
                out.stderr_str().trim()
            ),
            "",
        ),
        Err(e) => Finding::bad(
            CHECK,
            Severity::Warning,
            format!("not checked from {init}: {e}"),
            "bring the lab up (`kubelab up`): the check needs its first control plane; \
             `up` runs it itself before the Kubernetes stage",
        ),
    })
}
