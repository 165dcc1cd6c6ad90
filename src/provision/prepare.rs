//! Preparing a virthost for a lab, through its transport: `prepare.sh`
//! (packages, a running libvirtd), the base image (built or downloaded,
//! cached on the virthost) and the domain type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::access::VirthostAccess;
use crate::lab::Lab;
use crate::lab::model::{DomainType as LabDomainType, Image};
use crate::transport::Command;
use crate::virthost::libvirt::Connection;
use crate::virthost::scripts::{
    BUILD_IMAGE_DEBIAN, PREPARE, RELEASE, ScriptReport, VIRTHOST_STATE,
};
use crate::virthost::spec::{DomainType, VolumeFormat};

/// Run `prepare.sh` on the virthost; returns how many things it changed.
/// Without `install` it only configures and starts what is installed.
pub async fn prepare(access: &VirthostAccess, lab: &Lab, install: bool) -> Result<usize, String> {
    let image_tools = if matches!(lab.image, Image::Build { .. }) {
        "1"
    } else {
        "0"
    };
    let stdout = access
        .run_script(
            "prepare.sh",
            PREPARE,
            &[
                ("KUBELAB_INSTALL", if install { "1" } else { "0" }),
                ("KUBELAB_IMAGE_TOOLS", image_tools),
                ("KUBELAB_VIRTHOST_STATE", VIRTHOST_STATE),
            ],
            Duration::from_secs(1800),
        )
        .await?;
    Ok(ScriptReport::read(&stdout).count.unwrap_or(0))
}

/// Run `release.sh` on the virthost after a lab went down; returns what it
/// changed (one line each), or why it left the virthost as it is (something
/// else uses it). `running`: how many networks and domains libvirt runs, when the
/// caller's connection just asked (the script asks `virsh` otherwise).
pub async fn release(
    access: &VirthostAccess,
    storage_dir: &str,
    own_lock: &Path,
    running: Option<(usize, usize)>,
) -> Result<Vec<String>, String> {
    let own_lock = own_lock.display().to_string();
    let running = running.map_or(String::new(), |(n, d)| format!("{n} {d}"));
    let stdout = access
        .run_script(
            "release.sh",
            RELEASE,
            &[
                ("KUBELAB_VIRTHOST_STATE", VIRTHOST_STATE),
                ("KUBELAB_STORAGE_DIR", storage_dir),
                ("KUBELAB_OWN_LOCK", own_lock.as_str()),
                ("KUBELAB_LIBVIRT_RUNNING", running.as_str()),
            ],
            Duration::from_secs(120),
        )
        .await?;
    let report = ScriptReport::read(&stdout);
    Ok(report
        .changes
        .into_iter()
        .chain(
            report
                .kept
                .iter()
                .map(|why| format!("left as it is: {why}")),
        )
        .collect())
}

/// The base image on the virthost.
#[derive(Clone, Debug)]
pub struct BaseImage {
    pub path: PathBuf,
    pub format: VolumeFormat,
}

/// Downloads `KUBELAB_URL` into the cache, checks `KUBELAB_SHA256`,
/// decompresses `.xz`/`.gz`; prints the format, then the path.
const DOWNLOAD_IMAGE: &str = r#"set -eu
dir=$KUBELAB_IMAGE_DIR
mkdir -p "$dir"
out="$dir/$KUBELAB_SHA256.img"
if [ ! -f "$out" ]; then
  tmp="$out.part.$$"
  trap 'rm -f "$tmp" "$tmp.dl"' EXIT
  echo "downloading $KUBELAB_URL" >&2
  curl -fsSL --retry 3 -o "$tmp.dl" "$KUBELAB_URL"
  got=$(sha256sum < "$tmp.dl" | cut -d' ' -f1)
  if [ "$got" != "$KUBELAB_SHA256" ]; then
    echo "error: sha256 of $KUBELAB_URL is $got, the lab says $KUBELAB_SHA256" >&2
    exit 1
  fi
  case "$KUBELAB_URL" in
    *.xz) xz -dc "$tmp.dl" > "$tmp"; rm -f "$tmp.dl" ;;
    *.gz) gzip -dc "$tmp.dl" > "$tmp"; rm -f "$tmp.dl" ;;
    *) mv "$tmp.dl" "$tmp" ;;
  esac
  mv "$tmp" "$out"
fi
qemu-img info --output=json "$out" | sed -n 's/.*"format": *"\([a-z0-9]*\)".*/\1/p' | head -n 1
echo "$out"
"#;

/// Where [`base_image`] puts the lab's base image, without building or
/// downloading it (for `plan`): `<images>/<sha256>.img` for a download; for
/// a build, the name `build-image-debian.sh` derives from its recipe (its
/// text, suite, packages, disk size: see the script's "Cache" note).
pub fn expected_base_image(lab: &Lab) -> Option<PathBuf> {
    let dir = super::desired::image_dir(lab);
    match &lab.image {
        Image::Download { sha256, .. } => {
            Some(dir.join(format!("{}.img", sha256.to_ascii_lowercase())))
        }
        Image::Build {
            recipe, packages, ..
        } => {
            if recipe != "debian-12" {
                return None;
            }
            let extra = packages
                .iter()
                .flat_map(|p| p.split([',', ' ']))
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let key = crate::virthost::scripts::sha256_hex(&format!(
                "{}\n\nbookworm|{extra}|3072\n",
                crate::virthost::scripts::sha256_hex(BUILD_IMAGE_DEBIAN)
            ));
            Some(dir.join(format!("debian-bookworm-{}.qcow2", &key[..16])))
        }
    }
}

/// The lab's base image: built from a recipe (`build-image-debian.sh`,
/// cached by recipe hash) or downloaded (cached by checksum), on the
/// virthost, under `<storage_dir>/images`.
pub async fn base_image(access: &VirthostAccess, lab: &Lab) -> Result<BaseImage, String> {
    let dir = super::desired::image_dir(lab).display().to_string();
    let (template, vars, what) = match &lab.image {
        Image::Build {
            recipe, packages, ..
        } => {
            if recipe != "debian-12" {
                return Err(format!(
                    "image recipe {recipe:?} is not known (known: debian-12)"
                ));
            }
            let packages = packages.join(" ");
            (
                BUILD_IMAGE_DEBIAN,
                vec![
                    ("KUBELAB_IMAGE_DIR", dir.clone()),
                    ("KUBELAB_EXTRA_PACKAGES", packages),
                ],
                "build-image-debian.sh",
            )
        }
        Image::Download { url, sha256, .. } => (
            DOWNLOAD_IMAGE,
            vec![
                ("KUBELAB_IMAGE_DIR", dir.clone()),
                ("KUBELAB_URL", url.clone()),
                ("KUBELAB_SHA256", sha256.to_ascii_lowercase()),
            ],
            "image download",
        ),
    };
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let stdout = access
        .run_script(what, template, &vars, Duration::from_secs(3600))
        .await?;
    let mut lines = stdout.lines().rev().filter(|l| !l.trim().is_empty());
    let path = lines.next().map(str::trim).unwrap_or_default();
    if !path.starts_with('/') {
        return Err(format!(
            "{what} printed no image path:\n{}",
            super::access::tail(&stdout, 10)
        ));
    }
    let format = match &lab.image {
        Image::Build { .. } => VolumeFormat::Qcow2,
        Image::Download { .. } => match lines.next().map(str::trim) {
            Some("qcow2") => VolumeFormat::Qcow2,
            Some("raw") => VolumeFormat::Raw,
            other => {
                return Err(format!(
                    "image {path}: format {other:?} is not supported (qcow2 or raw)"
                ));
            }
        },
    };
    Ok(BaseImage {
        path: PathBuf::from(path),
        format,
    })
}

/// The domain type for the lab's VMs, and why.
///
/// `auto` takes `kvm` only when libvirt offers it AND the virthost's CPU
/// flags (`/proc/cpuinfo`) have `vmx` or `svm`: a `/dev/kvm` without them
/// (e.g. paravirtualized KVM such as kvm_pvm, where libvirt offers kvm but
/// guests hang) means plain QEMU emulation (TCG).
pub async fn domain_type(
    access: &VirthostAccess,
    lab: &Lab,
    libvirt: &Connection,
) -> Result<(DomainType, String), String> {
    match lab.virthost.domain_type {
        LabDomainType::Kvm => return Ok((DomainType::Kvm, "domain_type: kvm".into())),
        LabDomainType::Qemu => return Ok((DomainType::Qemu, "domain_type: qemu".into())),
        LabDomainType::Auto => {}
    }
    let probe = kvm_probe(access).await?;
    let offered = super::access::blocking(|| libvirt.kvm_offered());
    Ok(match (probe, offered) {
        (KvmProbe::Usable, true) => (
            DomainType::Kvm,
            "auto: /dev/kvm and vmx/svm CPU flags".into(),
        ),
        (KvmProbe::Usable, false) => (DomainType::Qemu, "auto: libvirt does not offer kvm".into()),
        (KvmProbe::NoDevice, _) => (DomainType::Qemu, "auto: no /dev/kvm".into()),
        (KvmProbe::NoCpuFlags, _) => (
            DomainType::Qemu,
            "auto: /dev/kvm without vmx/svm CPU flags (KVM guests would hang)".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A downloaded image through the local virthost, for real (curl with
    /// `file://`, sha256sum, xz, gzip, qemu-img): plain, `.xz` and `.gz`
    /// images land decompressed under the checksum of what was downloaded;
    /// a wrong checksum is an error that names both sums and leaves nothing
    /// behind.
    #[tokio::test]
    async fn downloaded_images_are_checked_and_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let sh = |cmd: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmd}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        sh("qemu-img create -q -f qcow2 base.qcow2 16M && xz -k base.qcow2 && gzip -k base.qcow2");
        let storage = dir.path().join("storage");
        for (file, format) in [
            ("base.qcow2", VolumeFormat::Qcow2),
            ("base.qcow2.xz", VolumeFormat::Qcow2),
            ("base.qcow2.gz", VolumeFormat::Qcow2),
        ] {
            let sum = sh(&format!("sha256sum {file} | cut -c1-64"));
            let url = format!("file://{}", dir.path().join(file).display());
            for (given, ok) in [("0".repeat(64), false), (sum.clone(), true)] {
                let text = format!(
                    "name: t\nvirthost: {{local: true, storage_dir: {}}}\nimage: {{url: \"{url}\", sha256: {given}}}\nnetworks: [{{name: lan, ipv4: 10.9.0.0/24}}]\nvms: [{{name: a}}]\n",
                    storage.display()
                );
                let (lab, _) = crate::lab::load_str(
                    std::path::Path::new("t.yaml"),
                    &text,
                    &Default::default(),
                )
                .unwrap_or_else(|d| panic!("{}", d.render(false)));
                let access = VirthostAccess::connect(&lab).await.unwrap();
                let images = storage.join("images");
                match base_image(&access, &lab).await {
                    Ok(image) if ok => {
                        assert_eq!(image.path, images.join(format!("{sum}.img")));
                        assert_eq!(image.format, format, "{file}");
                        let info = sh(&format!(
                            "qemu-img info --output=json {} | grep -c '\"virtual-size\": 16777216'",
                            image.path.display()
                        ));
                        assert_eq!(info, "1", "{file} was not decompressed");
                    }
                    Err(e) if !ok => {
                        assert!(
                            e.contains(&format!("sha256 of {url} is {sum}, the lab says {given}")),
                            "{e}"
                        );
                        let left: Vec<_> = std::fs::read_dir(&images)
                            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                            .unwrap_or_default();
                        assert!(left.is_empty(), "left behind: {left:?}");
                    }
                    other => panic!("{file} with sha256 {given}: {other:?}"),
                }
            }
            std::fs::remove_dir_all(&storage).unwrap();
        }
    }

    /// The name the script itself derives: its KEY line run by sh.
    #[test]
    fn expected_build_image_name_is_the_scripts() {
        let text = "name: t\nvirthost: {local: true, storage_dir: /s}\nimage: {build: debian-12, packages: [jq, tcpdump]}\nnetworks: [{name: lan, ipv4: 10.9.0.0/24}]\nvms: [{name: a}]\n";
        let (lab, _) =
            crate::lab::load_str(std::path::Path::new("t.yaml"), text, &Default::default())
                .unwrap_or_else(|d| panic!("{}", d.render(false)));
        let line = BUILD_IMAGE_DEBIAN
            .lines()
            .find(|l| l.starts_with("KEY="))
            .expect("the script's KEY line");
        let sh = format!(
            "SCRIPT_SHA256={}; SUITE=bookworm; EXTRA='jq tcpdump'; DISK_MIB=3072; {line}; echo \"$KEY\"",
            crate::virthost::scripts::sha256_hex(BUILD_IMAGE_DEBIAN)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(sh)
            .output()
            .unwrap();
        let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(key.len(), 16, "{out:?}");
        assert_eq!(
            expected_base_image(&lab).unwrap(),
            PathBuf::from(format!("/s/images/debian-bookworm-{key}.qcow2"))
        );
    }
}

/// What the virthost says about KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmProbe {
    Usable,
    NoDevice,
    NoCpuFlags,
}

pub async fn kvm_probe(access: &VirthostAccess) -> Result<KvmProbe, String> {
    let out = access
        .run(
            Command::script(
                "if [ ! -c /dev/kvm ]; then echo no-device; \
                 elif grep -Eqw 'vmx|svm' /proc/cpuinfo; then echo usable; \
                 else echo no-cpu-flags; fi",
            ),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(match out.stdout_str().trim() {
        "usable" => KvmProbe::Usable,
        "no-device" => KvmProbe::NoDevice,
        _ => KvmProbe::NoCpuFlags,
    })
}
