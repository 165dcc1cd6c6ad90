//! `service-chain`: client → firewall → router → web server in containers
//! joined by veth links on one VM; break kills the firewall, repair routes
//! around it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, Scenario, one, to_json};
use crate::yaml::Seg;

/// How workloads of networking scenarios are run on a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Podman containers (images built locally from the node's packages).
    #[default]
    Podman,
    /// Docker containers.
    Docker,
    /// Plain network namespaces (no container runtime needed).
    Netns,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceChainParams {
    /// The VM running the chain (default: the lab's first VM).
    #[serde(default)]
    pub node: Option<String>,
    /// podman (default) or docker.
    #[serde(default)]
    pub engine: Engine,
}

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    node: Option<String>,
    engine: Engine,
}

impl Scenario for ServiceChainParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        one("node", &self.node)
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        if self.engine == Engine::Netns {
            c.error_help(
                &c.param("engine"),
                "the service chain runs containers: engine podman or docker",
                "engine: podman",
            );
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        to_json(Resolved {
            node: self
                .node
                .clone()
                .or_else(|| lab.vms.first().map(|v| v.name.clone())),
            engine: self.engine,
        })
    }
}
