//! Cloud-init delivery: a clone's seed ISO built against its MAC, uploaded unless its
//! content-addressed name is in the storage, and attached as `ide2` (`delivery: iso`); or its
//! snippets written to the node and named by `cicustom` (`delivery: snippets`); and the seeds
//! and snippets proxfleet made removed once nothing references them.

use super::change::{ChangeRun, StepError};
use crate::graph::DesiredVm;
use crate::pve::UploadRequest;

/// The error of a change that needs snippets when the run has no way to write them.
fn no_snippet_store() -> StepError {
    StepError::Snippet {
        what: "cloud-init snippets".into(),
        source: Box::new(crate::snippets::SnippetError::NoStore),
    }
}

impl ChangeRun {
    /// Build the clone's cloud-init seed ISO against its MAC as it is now, upload it unless the
    /// storage holds it already (its name is its content), attach it as `ide2` in place of
    /// Proxmox's cloud-init drive, and delete the seed it replaces (`previous`, a seed of this
    /// VM's alone: seeds carry the host name).
    pub(super) async fn attach_seed(
        &self,
        vm: &DesiredVm,
        node: &str,
        previous: Option<&str>,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let Some(plan) = vm.seed.as_deref().filter(|plan| !plan.is_snippets()) else {
            return Ok(()); // snippets keep Proxmox's drive
        };
        let pve = |what: &str| {
            let what = what.to_string();
            move |source| StepError::Pve { what, source }
        };
        let config = self
            .client
            .vm_config(node, vm.vmid)
            .await
            .map_err(pve("read config"))?;
        let iso = plan
            .build(&config.values)
            .map_err(|err| StepError::Inconsistent(format!("cloud-init seed: {err}")))?;
        let volid = plan.volid(&iso);
        let present = self
            .client
            .storage_content(node, &plan.storage, Some("iso"))
            .await
            .map_err(pve("list seed ISOs"))?
            .iter()
            .any(|v| v.volid == volid);
        if !present {
            let file = tempfile::NamedTempFile::new()
                .and_then(|mut file| {
                    std::io::Write::write_all(&mut file, &iso.bytes)?;
                    Ok(file)
                })
                .map_err(|err| StepError::Inconsistent(format!("cloud-init seed: {err}")))?;
            let request = UploadRequest {
                file: file.path().to_path_buf(),
                filename: iso.file_name.clone(),
                content: "iso".into(),
                checksum: Some((
                    "sha256".into(),
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&iso.bytes)),
                )),
            };
            self.task(
                &format!("upload cloud-init seed {volid}"),
                tasks,
                || async {
                    self.client
                        .upload(node, &plan.storage, &request)
                        .await
                        .map(Some)
                },
            )
            .await?;
        }
        let value = format!("{volid},media=cdrom");
        let attached = config
            .values
            .get("ide2")
            .is_some_and(|current| current.split(',').next() == Some(volid.as_str()));
        if !attached {
            let set = vec![("ide2".to_string(), value)];
            self.task("attach cloud-init seed as ide2", tasks, || {
                self.client
                    .update_vm_config(node, vm.vmid, &set, &[], Some(&config.digest))
            })
            .await?;
        }
        if let Some(old) = previous.and_then(|v| v.split(',').next())
            && old != volid
            && crate::seed::is_seed_volid(old)
        {
            self.remove_seed(node, old, tasks).await?;
        }
        Ok(())
    }

    /// The snippet store; its absence is `no_snippet_store`.
    fn snippet_store(&self) -> Option<&crate::snippets::SnippetStore> {
        self.options.snippets.as_deref()
    }

    /// Write the clone's snippets (`delivery: snippets`) to its node, each unless a file with
    /// its name (its content) is there already.
    pub(super) async fn write_snippets(&self, vm: &DesiredVm, node: &str) -> Result<(), StepError> {
        let Some(plan) = vm.seed.as_deref().filter(|plan| plan.is_snippets()) else {
            return Ok(());
        };
        let snippets = plan
            .snippets()
            .map_err(|err| StepError::Inconsistent(format!("cloud-init snippets: {err}")))?;
        let store = self.snippet_store().ok_or_else(no_snippet_store)?;
        for snippet in &snippets {
            let volid = plan.snippet_volid(snippet);
            let what = format!("write snippet {volid} on {node}");
            if let Some(cancelled) = self.cancelled_before(&what) {
                return Err(cancelled);
            }
            let written = store
                .put(
                    &self.client,
                    node,
                    &plan.storage,
                    &snippet.file_name,
                    snippet.content.as_bytes(),
                )
                .await
                .map_err(|source| StepError::Snippet {
                    what: what.clone(),
                    source: Box::new(source),
                })?;
            if written {
                self.step(what);
            }
        }
        Ok(())
    }

    /// Remove the snippets proxfleet wrote that `cicustom` names, except those in `keep`. A
    /// snippet's name carries its clone's name, so no other VM references it.
    pub(super) async fn remove_snippets(
        &self,
        node: &str,
        cicustom: &str,
        keep: &[String],
    ) -> Result<(), StepError> {
        for volid in crate::seed::cicustom_volids(cicustom) {
            let Some((storage, name)) = crate::seed::proxfleet_snippet(&volid) else {
                continue;
            };
            if keep.contains(&volid) {
                continue;
            }
            let what = format!("delete snippet {volid} on {node}");
            let removed = self
                .snippet_store()
                .ok_or_else(no_snippet_store)?
                .remove(&self.client, node, storage, name)
                .await
                .map_err(|source| StepError::Snippet {
                    what: what.clone(),
                    source: Box::new(source),
                })?;
            if removed {
                self.step(what);
            }
        }
        Ok(())
    }

    /// Delete a seed ISO proxfleet made.
    pub(super) async fn remove_seed(
        &self,
        node: &str,
        volid: &str,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let Some((storage, _)) = volid.split_once(':') else {
            return Ok(());
        };
        self.task(&format!("delete cloud-init seed {volid}"), tasks, || {
            self.client.delete_volume(node, storage, volid)
        })
        .await
    }
}
