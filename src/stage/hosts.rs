//! One connection per VM of an `up` lab (through the virthost), kept for a
//! whole command, so that every stage of one `up` reuses them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::Stage;
use super::vars::stage_inventory;
use crate::inventory::{Inventory, UnreachableTransport};
use crate::lab::Lab;
use crate::provision::access::VirthostAccess;
use crate::provision::{ProvisionError, read_inventory, vm_target};
use crate::state::Inventory as StateInventory;
use crate::transport::Transport;

/// One connection per VM of an `up` lab (through the virthost), kept for a
/// whole command, and the virthost's own access.
pub struct LabHosts {
    access: VirthostAccess,
    state: StateInventory,
    vms: Vec<(String, Arc<dyn Transport>)>,
}

impl LabHosts {
    /// Connect to every VM of the lab at once. A VM that does not answer is
    /// kept as unreachable (its steps fail with exit code 3; the others run).
    pub async fn connect(lab: &Lab) -> Result<LabHosts, ProvisionError> {
        let state = read_inventory(lab)?.ok_or_else(|| {
            ProvisionError::Failed(format!(
                "lab {} is not up (no inventory in its state directory; run `kubelab up` first)",
                lab.name
            ))
        })?;
        let access = VirthostAccess::connect(lab).await.map_err(|e| {
            if e.is_unreachable() {
                ProvisionError::Unreachable(e.to_string())
            } else {
                ProvisionError::Failed(e.to_string())
            }
        })?;
        let dir = crate::state::state_dir(&lab.name);
        let connects = state.vms.iter().map(|rec| {
            let mut target = vm_target(&state, rec, &dir);
            target.connect_attempts = 3;
            let access = &access;
            async move {
                let t: Arc<dyn Transport> = match access.vm(target).await {
                    Ok(t) => Arc::new(t),
                    Err(e) => Arc::new(UnreachableTransport::from_error(&rec.name, &e)),
                };
                (rec.name.clone(), t)
            }
        });
        let vms = futures::future::join_all(connects).await;
        Ok(LabHosts { access, state, vms })
    }

    pub fn access(&self) -> &VirthostAccess {
        &self.access
    }

    /// The connection to a VM (an unreachable one answers every command
    /// with the reason), `None` when the inventory has no such VM.
    pub fn vm(&self, name: &str) -> Option<Arc<dyn Transport>> {
        self.vms
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    /// The engine's inventory for a stage: the lab's VMs (in lab order, with
    /// [`vm_vars`] and the stage's host vars), the stage's groups, and the
    /// virthost when the stage asks for it.
    pub fn inventory(&self, lab: &Lab, stage: &Stage) -> Inventory {
        let transports: BTreeMap<&str, Arc<dyn Transport>> = self
            .vms
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let virthost: Arc<dyn Transport> = match &self.access {
            VirthostAccess::Local(_) => Arc::new(crate::transport::LocalTransport::new("virthost")),
            VirthostAccess::Remote(t) => t.clone(),
        };
        stage_inventory(
            lab,
            stage,
            Some(&self.state),
            |vm| {
                transports.get(vm).cloned().unwrap_or_else(|| {
                    Arc::new(UnreachableTransport::new(
                        vm,
                        "not in the lab's inventory: run `kubelab up` again",
                    ))
                })
            },
            virthost,
        )
    }

    /// Close every connection.
    pub async fn close(self) {
        drop(self.vms);
        if let VirthostAccess::Remote(t) = &self.access {
            t.disconnect().await;
        }
    }
}
