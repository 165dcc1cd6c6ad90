//! A running cluster as `kubelab status` shows it: each node's readiness,
//! roles, kubelet version and container runtime, read from `kubectl get
//! nodes -o json` on the first control plane; and the lab's kubeconfig
//! merged into the user's (`~/.kube/config`) as a context named after the
//! lab.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
    /// From the `node-role.kubernetes.io/<role>` labels.
    pub roles: Vec<String>,
    pub version: String,
    /// `containerd://1.7.22`, `cri-o://1.31.1`, `docker://27.3.1`.
    pub runtime: String,
    pub internal_ips: Vec<String>,
}

/// The command that lists the nodes on a control plane.
pub const GET_NODES: &str =
    "sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json";

/// Parse `kubectl get nodes -o json`.
pub fn parse_nodes(json: &str) -> Result<Vec<NodeStatus>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("kubectl output: {e}"))?;
    let items = v["items"]
        .as_array()
        .ok_or("kubectl output has no `items`")?;
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    Ok(items
        .iter()
        .map(|n| {
            let mut roles: Vec<String> = n["metadata"]["labels"]
                .as_object()
                .map(|labels| {
                    labels
                        .keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            roles.sort();
            let ready = n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            let internal_ips = n["status"]["addresses"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|a| a["type"] == "InternalIP")
                        .map(|a| text(&a["address"]))
                        .collect()
                })
                .unwrap_or_default();
            NodeStatus {
                name: text(&n["metadata"]["name"]),
                ready,
                roles,
                version: text(&n["status"]["nodeInfo"]["kubeletVersion"]),
                runtime: text(&n["status"]["nodeInfo"]["containerRuntimeVersion"]),
                internal_ips,
            }
        })
        .collect())
}

/// The nodes as a table.
pub fn table(nodes: &[NodeStatus]) -> String {
    let mut rows = vec![[
        "NODE".to_string(),
        "STATUS".into(),
        "ROLES".into(),
        "VERSION".into(),
        "RUNTIME".into(),
        "INTERNAL-IP".into(),
    ]];
    for n in nodes {
        rows.push([
            n.name.clone(),
            if n.ready { "Ready" } else { "NotReady" }.into(),
            if n.roles.is_empty() {
                "<none>".into()
            } else {
                n.roles.join(",")
            },
            n.version.clone(),
            n.runtime.clone(),
            n.internal_ips.join(","),
        ]);
    }
    crate::columns::render(&rows)
}

/// Merge the lab's admin kubeconfig into `target` (created when missing):
/// its cluster becomes `<lab>`, its user `<lab>-admin`, its context
/// `<lab>`; entries of the same names are replaced, everything else is
/// kept; `current-context` is set only when `target` had none. Written
/// with mode 0600. Returns whether `target` changed.
pub fn merge_kubeconfig(lab: &str, source: &Path, target: &Path) -> Result<bool, String> {
    let read = |p: &Path| -> Result<Option<Value>, String> {
        match std::fs::read_to_string(p) {
            Ok(t) if t.trim().is_empty() => Ok(None),
            Ok(t) => serde_saphyr::from_str::<Value>(&t)
                .map(Some)
                .map_err(|e| format!("{}: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    };
    let src = read(source)?.ok_or_else(|| format!("{}: no kubeconfig", source.display()))?;
    let first = |key: &str| -> Result<Value, String> {
        src[key]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .ok_or_else(|| format!("{}: no `{key}`", source.display()))
    };
    let mut cluster = first("clusters")?;
    let mut user = first("users")?;
    cluster["name"] = Value::from(lab);
    let user_name = format!("{lab}-admin");
    user["name"] = Value::from(user_name.clone());
    let context = serde_json::json!({"name": lab, "context": {"cluster": lab, "user": user_name}});

    let before = read(target)?;
    let mut merged = before.clone().unwrap_or_else(|| {
        serde_json::json!({"apiVersion": "v1", "kind": "Config", "preferences": {},
                           "clusters": [], "users": [], "contexts": []})
    });
    for (key, entry) in [
        ("clusters", cluster),
        ("users", user),
        ("contexts", context),
    ] {
        let name = entry["name"].clone();
        let list = merged[key].as_array().cloned().unwrap_or_default();
        let mut list: Vec<Value> = list.into_iter().filter(|e| e["name"] != name).collect();
        list.push(entry);
        merged[key] = Value::Array(list);
    }
    if merged["current-context"].as_str().is_none_or(str::is_empty) {
        merged["current-context"] = Value::from(lab);
    }
    if before.as_ref() == Some(&merged) {
        return Ok(false);
    }
    let text = serde_saphyr::to_string(&merged).map_err(|e| e.to_string())?;
    write_private(target, &text).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(true)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("kubelab-new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = r#"{"items": [
      {"metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "linux"}},
       "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                  "addresses": [{"type": "InternalIP", "address": "fd00:152::10"}, {"type": "Hostname", "address": "cp-1"}],
                  "nodeInfo": {"kubeletVersion": "v1.31.3", "containerRuntimeVersion": "containerd://1.7.22"}}},
      {"metadata": {"name": "w-1", "labels": {}},
       "status": {"conditions": [{"type": "Ready", "status": "False"}],
                  "nodeInfo": {"kubeletVersion": "v1.31.3", "containerRuntimeVersion": "cri-o://1.31.1"}}}
    ]}"#;

    #[test]
    fn nodes_parse_into_a_table() {
        let nodes = parse_nodes(NODES).unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(nodes[0].ready && !nodes[1].ready);
        assert_eq!(nodes[0].roles, ["control-plane"]);
        assert_eq!(nodes[0].internal_ips, ["fd00:152::10"]);
        let t = table(&nodes);
        assert!(
            t.starts_with("NODE  STATUS    ROLES          VERSION  RUNTIME"),
            "{t}"
        );
        assert!(
            t.contains("w-1   NotReady  <none>         v1.31.3  cri-o://1.31.1"),
            "{t}"
        );
        assert!(parse_nodes("not json").is_err());
        assert!(parse_nodes("{}").is_err());
    }

    #[test]
    fn kubeconfig_merges_as_a_context_named_after_the_lab() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("admin.conf");
        std::fs::write(
            &src,
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://192.168.152.10:6443\n  name: ipv6\ncontexts:\n- context:\n    cluster: ipv6\n    user: kubernetes-admin\n  name: kubernetes-admin@ipv6\ncurrent-context: kubernetes-admin@ipv6\nusers:\n- name: kubernetes-admin\n  user:\n    client-key-data: S0VZ\n",
        )
        .unwrap();
        let target = dir.path().join("kube/config");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(
            &target,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://o:6443}\nusers:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n",
        )
        .unwrap();
        assert!(merge_kubeconfig("ipv6", &src, &target).unwrap());
        let merged: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
        assert_eq!(merged["current-context"], "other");
        let names = |k: &str| -> Vec<String> {
            merged[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("clusters"), ["other", "ipv6"]);
        assert_eq!(names("users"), ["other", "ipv6-admin"]);
        assert_eq!(names("contexts"), ["other", "ipv6"]);
        assert_eq!(merged["contexts"][1]["context"]["user"], "ipv6-admin");
        assert_eq!(merged["users"][1]["user"]["client-key-data"], "S0VZ");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            !merge_kubeconfig("ipv6", &src, &target).unwrap(),
            "unchanged"
        );
        let fresh = dir.path().join("fresh/config");
        assert!(merge_kubeconfig("ipv6", &src, &fresh).unwrap());
        let fresh: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(dir.path().join("fresh/config")).unwrap(),
        )
        .unwrap();
        assert_eq!(fresh["current-context"], "ipv6");
    }
}
