//! Images in the storage: downloaded by Proxmox from their URL (`mode: download`, the task's
//! log passed on as progress), or fetched, checked and decompressed here and uploaded
//! (`mode: upload`); and the files of an image the plan deletes.

use super::change::{ChangeRun, StepError};
use super::storage_gate::Allocation;
use crate::graph::DesiredImage;
use crate::pve::{DownloadRequest, UploadRequest};
use crate::spec::ImageMode;

impl ChangeRun {
    /// Put `image` in its storage, as its mode says.
    pub(super) async fn create_image(
        &self,
        image: &DesiredImage,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        match image.image.mode {
            ImageMode::Upload => self.fetch_and_upload_image(image, tasks).await,
            ImageMode::Download => self.download_image(image, tasks).await,
        }
    }

    /// Have Proxmox download the image, checking its checksum.
    async fn download_image(
        &self,
        image: &DesiredImage,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let request = DownloadRequest {
            url: image.url.clone(),
            filename: image.file_name.clone(),
            content: "import".into(),
            checksum: Some((image.checksum_algorithm.clone(), image.checksum_hex.clone())),
            verify_certificates: None,
        };
        let storage = format!("{}@{}", image.storage, image.node);
        let allocation = Allocation {
            storage: &storage,
            volumes: 1,
            progress_in_log: true,
        };
        self.task_allocating(
            &format!("download {}", image.volid),
            tasks,
            Some(allocation),
            || async {
                self.client
                    .download_url(&image.node, &image.storage, &request)
                    .await
                    .map(Some)
            },
        )
        .await
    }

    /// Fetch the image here (checked against its checksum, decompressed), then upload it.
    async fn fetch_and_upload_image(
        &self,
        image: &DesiredImage,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        if let Some(cancelled) = self.cancelled_before(&format!("fetch {}", image.url)) {
            return Err(cancelled);
        }
        let compression = image.image.compression;
        // Progress at each quarter (or each 256 MiB when the size is not announced).
        let reported = std::sync::atomic::AtomicU64::new(0);
        let progress = |received: u64, total: Option<u64>| {
            let (mark, text) = match total {
                Some(total) if total > 0 => {
                    let quarter = received * 4 / total;
                    let mib = total as f64 / f64::from(1 << 20);
                    (quarter, format!("{}% of {mib:.1} MiB", quarter * 25))
                }
                _ => (received >> 28, format!("{} MiB", received >> 20)),
            };
            let before = reported.fetch_max(mark, std::sync::atomic::Ordering::Relaxed);
            if mark > before {
                self.step(format!("fetching {}: {text}", image.url));
            }
        };
        let fetched = crate::fetch::fetch_image(
            &image.url,
            &image.checksum_algorithm,
            &image.checksum_hex,
            compression,
            &image.image.file_name,
            &progress,
        )
        .await
        .map_err(|err| StepError::Inconsistent(err.to_string()))?;
        self.step(format!(
            "fetch {} and verify its {} checksum{}",
            image.url,
            image.checksum_algorithm,
            compression.map_or(String::new(), |c| format!(
                ", decompress it ({})",
                c.as_str()
            ))
        ));
        let request = UploadRequest {
            file: fetched.file.path().to_path_buf(),
            filename: image.file_name.clone(),
            content: "import".into(),
            checksum: Some(fetched.checksum.clone()),
        };
        let storage = format!("{}@{}", image.storage, image.node);
        let allocation = Allocation {
            storage: &storage,
            volumes: 1,
            progress_in_log: false,
        };
        self.task_allocating(
            &format!("upload {}", image.volid),
            tasks,
            Some(allocation),
            || async {
                self.client
                    .upload(&image.node, &image.storage, &request)
                    .await
                    .map(Some)
            },
        )
        .await
    }

    /// Delete one of an image's files (the current one, or an earlier copy).
    pub(super) async fn delete_image(
        &self,
        node: &str,
        storage: &str,
        volid: &str,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        self.task(&format!("delete {volid}"), tasks, || {
            self.client.delete_volume(node, storage, volid)
        })
        .await
    }
}
