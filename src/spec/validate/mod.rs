//! Raw → domain: every static check on a spec, all problems collected before returning so a
//! user fixes them in one pass. This file holds the pass itself (`Validator`: what it has found so
//! far, the spec's directory, the `defaults`) and its order: defaults, images, templates, clones;
//! the checks live with their subject in the files beside it.

mod addresses;
mod clones;
mod cloud_init;
mod collapse;
mod data_disks;
mod files;
mod images;
mod scalars;
mod shared_addresses;
mod ssh_keys;
mod templates;

use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::error::Diagnostic;
use super::model::*;
use super::raw::*;
use super::{Loaded, Warning};
use clones::check_clones;
use files::check_ssh;
use images::check_image;
use scalars::{
    DNS_LABEL_ALLOWED, Taken, check_node, check_storage, check_vm_name, claim_vmid, claim_vmid_as,
    is_dns_label,
};
use templates::check_template;

/// One validation pass over a spec: every problem and warning found so far, and what the checks
/// need to know of the spec as a whole.
struct Validator {
    /// Every problem found so far, in the order found (sorted by place at the end).
    diagnostics: Vec<Diagnostic>,
    /// Warnings, in the order found.
    warnings: Vec<Warning>,
    /// Directory of the spec file: relative paths in it are relative to this.
    base_dir: PathBuf,
    defaults: Defaults,
    /// Files read besides the spec (SSH key files), for saved plans' fingerprints.
    files_read: Vec<PathBuf>,
    /// The group clone each run of `diagnostics` was found for: (first index, end, name).
    subjects: Vec<(usize, usize, String)>,
}

/// The `defaults` block, validated.
#[derive(Default)]
struct Defaults {
    node: Option<String>,
    images: Option<String>,
    disks: Option<String>,
    iso: Option<String>,
    snippets: Option<String>,
    bridge: Option<String>,
}

impl Validator {
    /// A required value: the resource's own, else the default, else an error at `place`.
    fn pick(
        &mut self,
        own: Option<&Spanned<String>>,
        default: Option<&String>,
        place: &Spanned<String>,
        path: &str,
        what: &str,
        default_key: &str,
    ) -> Option<String> {
        match (own, default) {
            (Some(own), _) => Some(own.value.clone()),
            (None, Some(default)) => Some(default.clone()),
            (None, None) => {
                self.error_at(
                    place,
                    path,
                    format!("no {what} given and no `{default_key}` to fall back on"),
                    Some(&format!(
                        "set `{}` here or `{default_key}`",
                        path.rsplit('.').next().unwrap_or(path)
                    )),
                );
                None
            }
        }
    }

    fn error_at<T>(
        &mut self,
        spanned: &Spanned<T>,
        path: &str,
        message: String,
        allowed: Option<&str>,
    ) {
        let loc = spanned.referenced;
        self.diagnostics.push(Diagnostic {
            path: path.to_string(),
            message,
            allowed: allowed.map(str::to_string),
            line: loc.line(),
            column: loc.column(),
            len: loc.span().len().max(1),
        });
    }
}

/// A problem at the place a layer declares a value (its entry in the file).
fn error_at_origin(
    ctx: &mut Validator,
    origin: &super::layers::Origin,
    path: &str,
    message: String,
    allowed: &str,
) {
    ctx.diagnostics.push(Diagnostic {
        path: path.to_string(),
        message,
        allowed: Some(allowed.to_string()),
        line: origin.line,
        column: origin.column,
        len: 1,
    });
}

pub(super) fn validate(raw: RawSpec, file: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let mut ctx = Validator {
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        defaults: Defaults::default(),
        files_read: Vec::new(),
        subjects: Vec::new(),
    };
    if let Some(defaults) = &raw.defaults {
        ctx.defaults = check_defaults(&mut ctx, defaults);
    }
    let ssh = raw
        .defaults
        .as_ref()
        .and_then(|d| d.ssh.as_ref())
        .map(|ssh| check_ssh(&mut ctx, ssh))
        .unwrap_or_default();
    let image_names: Vec<String> = raw.images.keys().map(|k| k.value.clone()).collect();

    let images: Vec<Image> = raw
        .images
        .iter()
        .filter_map(|(name, image)| check_image(&mut ctx, name, image))
        .collect();

    let mut taken = Taken::default();
    let mut templates = Vec::new();
    for (name, template) in &raw.templates {
        let path = format!("templates.{}", name.value);
        check_vm_name(&mut ctx, name, &path, &mut taken.vm_names);
        if let Some(t) = check_template(&mut ctx, name, template, &image_names, &images) {
            claim_vmid(
                &mut ctx,
                &template.vmid,
                &format!("{path}.vmid"),
                &mut taken.vmids,
            );
            // The later builds' vmids are the template's too.
            for offset in 1..t.builds.unwrap_or(1) {
                let vmid = template.vmid.value + u64::from(offset);
                let place = serde_saphyr::Spanned::new(
                    vmid,
                    template.vmid.referenced,
                    template.vmid.defined,
                );
                claim_vmid_as(
                    &mut ctx,
                    &place,
                    &format!("{path}.builds"),
                    &format!(
                        "{path} (builds {}..={})",
                        template.vmid.value,
                        template.vmid.value + u64::from(t.builds.unwrap_or(1)) - 1
                    ),
                    &mut taken.vmids,
                );
            }
            templates.push(t);
        }
    }

    let (clones, explanations) = check_clones(&mut ctx, &raw, &templates, &mut taken);
    shared_addresses::check_shared_addresses(&mut ctx, &clones);

    let project = match &raw.project {
        None => "default".to_string(),
        Some(project) if is_dns_label(&project.value) => project.value.clone(),
        Some(project) => {
            ctx.error_at(
                project,
                "project",
                format!("`{}` is not a valid project name", project.value),
                Some(DNS_LABEL_ALLOWED),
            );
            String::new()
        }
    };
    if ctx.diagnostics.is_empty() {
        Ok(Loaded {
            spec: Spec {
                project,
                iso_storage: ctx.defaults.iso.clone(),
                snippets_storage: ctx.defaults.snippets.clone(),
                ssh,
                images,
                templates,
                clones,
            },
            warnings: ctx.warnings,
            explanations,
            files: {
                let mut files = ctx.files_read;
                files.sort();
                files.dedup();
                files
            },
        })
    } else {
        // A group's clones share the group's lines: report each problem once, with its clones.
        let mut subjects = ctx.subjects.into_iter().peekable();
        let found = ctx
            .diagnostics
            .into_iter()
            .enumerate()
            .map(|(idx, diag)| {
                while subjects.peek().is_some_and(|(_, end, _)| *end <= idx) {
                    subjects.next();
                }
                let subject = subjects
                    .peek()
                    .filter(|(start, _, _)| *start <= idx)
                    .map(|(_, _, name)| name.clone());
                (diag, subject)
            })
            .collect();
        Err(collapse::collapse(found))
    }
}

/// The `defaults` block: its node and storages checked, kept for the resources that fall back on
/// them.
fn check_defaults(ctx: &mut Validator, defaults: &RawDefaults) -> Defaults {
    if let Some(node) = &defaults.node {
        check_node(ctx, node, "defaults.node");
    }
    let roles = defaults.storage.as_ref();
    for (storage, path) in [
        (
            roles.and_then(|r| r.images.as_ref()),
            "defaults.storage.images",
        ),
        (
            roles.and_then(|r| r.disks.as_ref()),
            "defaults.storage.disks",
        ),
        (roles.and_then(|r| r.iso.as_ref()), "defaults.storage.iso"),
        (
            roles.and_then(|r| r.snippets.as_ref()),
            "defaults.storage.snippets",
        ),
    ] {
        if let Some(storage) = storage {
            check_storage(ctx, storage, path);
        }
    }
    Defaults {
        node: defaults.node.as_ref().map(|n| n.value.clone()),
        images: roles
            .and_then(|r| r.images.as_ref())
            .map(|s| s.value.clone()),
        disks: roles
            .and_then(|r| r.disks.as_ref())
            .map(|s| s.value.clone()),
        iso: roles.and_then(|r| r.iso.as_ref()).map(|s| s.value.clone()),
        snippets: roles
            .and_then(|r| r.snippets.as_ref())
            .map(|s| s.value.clone()),
        bridge: defaults.bridge.as_ref().map(|b| b.value.clone()),
    }
}
