//! `archive::volume_dump` and `archive::volume_restore`: a named volume archived and restored on
//! the node that holds it, through that node's engine. A helper container is created (never
//! started) from an image already on the node, with the volume mounted at `/wsm-volume`; the
//! engine's archive endpoint streams the folder as a tar (read-only mount) or unpacks one into it
//! (the engine accepts a gzip body), so the image needs no shell, no tar, nothing running, and no
//! port is opened. The helper is labelled `wsm.volume-helper`, removed at the end however the
//! command ends (a cleanup action), and one left by a killed run is removed by the next.

use std::path::Path;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, UploadToContainerOptions,
};
use rhai::{Dynamic, Map, Module};
use sha2::{Digest, Sha256};

use super::super::cleanup::Action;
use super::super::doc::{check_opts, Opt, Prim};
use super::super::docker::EngineHandle;
use super::super::output::OutputFile;
use super::super::{script_err, usage_err, Host, ScriptResult};

/// Where the helper container mounts the volume; the archive's top folder.
pub(super) const MOUNT: &str = "/wsm-volume";
/// The label of helper containers (its value: the volume).
const LABEL: &str = "wsm.volume-helper";

/// Removes helper containers of `volume` (a killed run's, or this run's).
async fn remove_helpers(docker: &bollard::Docker, volume: &str) -> Result<(), String> {
    let filters =
        std::collections::HashMap::from([("label".to_string(), vec![format!("{LABEL}={volume}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("listing helper containers: {e}"))?;
    for c in list {
        if let Some(id) = c.id {
            let opts = RemoveContainerOptions {
                force: true,
                v: false,
                ..Default::default()
            };
            docker
                .remove_container(&id, Some(opts))
                .await
                .map_err(|e| format!("removing helper container {id}: {e}"))?;
        }
    }
    Ok(())
}

/// Creates the helper container for `volume` from `image`; its removal is a cleanup action,
/// whose id is returned with the container's. A volume missing on the node is created by the
/// engine with `options` (a service mount's driver, its options and labels), as a task
/// mounting it would create it.
pub(super) async fn create_helper(
    h: &Arc<Host>,
    e: &EngineHandle,
    volume: &str,
    image: &str,
    read_only: bool,
    options: Option<MountVolumeOptions>,
) -> ScriptResult<(String, i64)> {
    remove_helpers(&e.docker, volume)
        .await
        .map_err(script_err)?;
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["/wsm-never-started".into()]),
        labels: Some([(LABEL.to_string(), volume.to_string())].into()),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.to_string()),
                target: Some(MOUNT.to_string()),
                read_only: Some(read_only),
                // The whole volume, never the image's files copied into a new one.
                volume_options: options.map(|o| MountVolumeOptions {
                    no_copy: Some(true),
                    subpath: None,
                    ..o
                }),
                ..Default::default()
            }]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = e
        .docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(|err| {
            script_err(format!(
                "creating a helper container for volume {volume} from {image} on {}: {err}",
                e.host
            ))
        })?;
    let (docker, vol) = (e.docker.clone(), volume.to_string());
    let action = Action::new(move || async move { remove_helpers(&docker, &vol).await });
    let id = h.cleanups.add(
        format!("removing the helper container of volume {volume}"),
        action,
    );
    Ok((created.id, id))
}

/// Whether the volume exists on the engine's node.
pub(super) async fn volume_exists(e: &EngineHandle, volume: &str) -> ScriptResult<bool> {
    match e.docker.inspect_volume(volume).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(err) => Err(script_err(format!("inspecting volume {volume}: {err}"))),
    }
}

/// The SHA-256 of a file, hex.
pub(super) fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

async fn volume_dump(
    h: &Arc<Host>,
    e: &EngineHandle,
    volume: &str,
    image: &str,
    out: &Path,
) -> ScriptResult<Map> {
    let out = OutputFile::check(out).map_err(usage_err)?;
    if !volume_exists(e, volume).await? {
        return Err(script_err(format!("volume {volume} is not on {}", e.host)));
    }
    let started = std::time::Instant::now();
    let (container, cleanup) = create_helper(h, e, volume, image, true, None).await?;
    let tmp = out
        .temp_file(true)
        .map_err(|err| usage_err(format!("cannot write beside {}: {err}", out.path.display())))?;
    let copied = super::download_gz(e, &container, MOUNT, tmp.as_file(), 1, true, false).await;
    let removed = h.cleanups.run(cleanup).await;
    let copied = copied?;
    removed.map_err(script_err)?;
    out.commit(tmp).map_err(|err| {
        script_err(format!(
            "cannot rename the archive to {}: {err}",
            out.path.display()
        ))
    })?;
    // Hashed as it was written (the file was fsynced before the rename): not read back.
    let sha = copied.sha256.unwrap_or_default();
    let size = std::fs::metadata(&out.path).map_err(script_err)?.len();
    let mut m = Map::new();
    m.insert("file".into(), out.path.display().to_string().into());
    m.insert("files".into(), Dynamic::from(copied.files.len() as i64));
    m.insert("bytes".into(), Dynamic::from(copied.bytes as i64));
    m.insert("size".into(), Dynamic::from(size as i64));
    m.insert("sha256".into(), sha.into());
    m.insert(
        "seconds".into(),
        Dynamic::from(started.elapsed().as_secs_f64()),
    );
    Ok(m)
}

async fn volume_restore(
    h: &Arc<Host>,
    e: &EngineHandle,
    volume: &str,
    image: &str,
    archive: &Path,
    options: Option<MountVolumeOptions>,
) -> ScriptResult<()> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|err| usage_err(format!("{}: {err}", archive.display())))?;
    let (container, cleanup) = create_helper(h, e, volume, image, false, options).await?;
    // A read error ends the body early: the engine then refuses the truncated gzip.
    let body = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((bytes::Bytes::from(buf), f))
            }
        }
    });
    let uploaded = e
        .docker
        .upload_to_container(
            &container,
            Some(UploadToContainerOptions {
                path: "/".into(),
                ..Default::default()
            }),
            bollard::body_stream(body),
        )
        .await;
    let removed = h.cleanups.run(cleanup).await;
    uploaded.map_err(|err| {
        script_err(format!(
            "restoring {} into volume {volume}: {err}",
            archive.display()
        ))
    })?;
    removed.map_err(script_err)
}

/// `archive::volume_restore`'s options.
const RESTORE_OPTS: &[Opt] = &[(
    "volume_options",
    "a service mount's VolumeOptions (DriverConfig, Labels): how a missing volume is created",
)];

/// Adds the volume functions to the `archive::` module.
pub(super) fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new(
        "archive::volume_dump(engine: Engine, volume: string, image: string, out_file: string) \
         -> map",
    )
    .doc(
        "Archives a named volume of the engine's node as tar.gz into `out_file` (a temporary \
         beside it, fsynced and renamed): a helper container from `image` (one already on the \
         node; never started) mounts it read-only and the engine streams it. Returns `#{file, \
         files, bytes, size, sha256, seconds}` (`sha256` of the archive file, taken as it is \
         written). The folder is copied once: stop its writers first.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle, volume: &str, image: &str, out: &str| -> ScriptResult<Map> {
            h.block(volume_dump(&h, &e, volume, image, Path::new(out)))
        },
    );

    let h = host.clone();
    let prim = Prim::new(
        "archive::volume_restore(engine: Engine, volume: string, image: string, archive: string)",
    )
    .doc(
        "Unpacks an archive of `archive::volume_dump` into a named volume of the engine's node \
         (created when missing), through a helper container from `image`; files of the archive \
         replace those of the same name, others are kept.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle, volume: &str, image: &str, archive: &str| -> ScriptResult<()> {
            h.block(volume_restore(
                &h,
                &e,
                volume,
                image,
                Path::new(archive),
                None,
            ))
        },
    );
    let h = host.clone();
    let prim = Prim::new(
        "archive::volume_restore(engine: Engine, volume: string, image: string, archive: string, opts: map)",
    )
    .doc(
        "`volume_restore` with `opts.volume_options`: a service mount's `VolumeOptions` as the \
         engine stores it (`DriverConfig`, `Labels`), with which a missing volume is created, as \
         the service's task would create it.",
    )
    .opts(RESTORE_OPTS);
    prim.set_in(
        m,
        move |e: EngineHandle,
              volume: &str,
              image: &str,
              archive: &str,
              opts: Map|
              -> ScriptResult<()> {
            check_opts("archive::volume_restore", &opts, RESTORE_OPTS)?;
            let options = match opts.get("volume_options") {
                None => None,
                Some(v) if v.is_unit() => None,
                Some(v) => Some(rhai::serde::from_dynamic::<MountVolumeOptions>(v).map_err(
                    |err| usage_err(format!("archive::volume_restore: volume_options: {err}")),
                )?),
            };
            h.block(volume_restore(
                &h,
                &e,
                volume,
                image,
                Path::new(archive),
                options,
            ))
        },
    );

    let prim = Prim::new("archive::verify(file: string) -> map").doc(
        "Re-reads a tar.gz whole: gzip integrity and the tar listing. Returns `#{ok, error, \
         files, sha256}`: `ok` false with the first `error` when it is damaged.",
    );
    prim.set_in(m, |file: &str| -> ScriptResult<Map> {
        let path = Path::new(file);
        let mut m = Map::new();
        let read = || -> std::io::Result<usize> {
            let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(path)?);
            let (files, _) = super::summarize_with(&mut gz, false)?;
            // To the gzip trailer: its CRC and length are checked only at the end.
            std::io::copy(&mut gz, &mut std::io::sink())?;
            Ok(files.len())
        };
        let (ok, error, files) = match read() {
            Ok(n) => (true, String::new(), n as i64),
            Err(err) => (false, err.to_string(), 0),
        };
        let sha = file_sha256(path).map_err(|err| usage_err(format!("{file}: {err}")))?;
        m.insert("ok".into(), ok.into());
        m.insert("error".into(), error.into());
        m.insert("files".into(), Dynamic::from(files));
        m.insert("sha256".into(), sha.into());
        Ok(m)
    });
}
