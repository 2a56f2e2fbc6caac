//! Images on an engine handle: build from a local folder, push with the credentials
//! `docker login` stored, read an image's repo digests.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptions, PushImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;

use super::{engine_error, failed, EngineHandle};
use crate::host::doc::Prim;
use crate::host::{script_err, Host, ScriptResult};

/// Why a registry could not tell an image's digest.
pub(super) enum NoDigest {
    /// It did not answer within the deadline.
    Timeout,
    /// It (or the engine asking it) refused, with the engine's message.
    Refused(String),
    /// It answered without a digest.
    Empty,
}

/// The digest (`sha256:…`) `image`'s registry holds for its tag now, asked through the
/// engine's distribution endpoint with the credentials `docker login` stored: the one lookup
/// of a deploy pinning digests and of `updates`.
pub(super) async fn registry_digest(
    d: &Docker,
    image: &str,
    timeout: std::time::Duration,
) -> Result<String, NoDigest> {
    let creds = registry_credentials(&registry_of(image));
    match tokio::time::timeout(timeout, d.inspect_registry_image(image, creds)).await {
        Err(_) => Err(NoDigest::Timeout),
        Ok(Err(err)) => Err(NoDigest::Refused(super::docker_message(&err))),
        Ok(Ok(info)) => info
            .descriptor
            .digest
            .filter(|d| !d.is_empty())
            .ok_or(NoDigest::Empty),
    }
}

/// The credentials `docker login` stored for a registry in `~/.docker/config.json`, if any.
pub(super) fn registry_credentials(registry: &str) -> Option<DockerCredentials> {
    let path = dirs::home_dir()?.join(".docker/config.json");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let auths = cfg.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k == registry || k.split('/').next() == Some(registry)
    })?;
    // `auth` is base64 of "user:password"; the engine wants them apart.
    use base64::Engine as _;
    let auth = entry.1.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}

/// The registry part of an image name ("localhost:5000/x:y" → "localhost:5000"), or Docker Hub.
pub(super) fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "https://index.docker.io/v1/".to_string(),
    }
}

/// Builds an image from a local context directory, streaming the build's output; a failed step
/// stops the build with its message.
async fn build(
    d: &Docker,
    context: &Path,
    tag: &str,
    args: HashMap<String, String>,
) -> ScriptResult<()> {
    let context = context.to_path_buf();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        // Links stay links, as docker sends them: a link to ~/.ssh must not put the keys in the
        // image.
        b.follow_symlinks(false);
        b.append_dir_all(".", &context)?;
        b.into_inner()
    })
    .await
    .map_err(script_err)?
    .map_err(|e| script_err(format!("packing the build context: {e}")))?;
    let options = BuildImageOptions {
        t: Some(tag.to_string()),
        buildargs: Some(args),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = d.build_image(options, None, Some(bollard::body_full(tar.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| failed(&format!("building {tag}"), e))?;
        if let Some(detail) = info.error_detail {
            return Err(script_err(format!(
                "building {tag}: {}",
                detail.message.unwrap_or_default().trim()
            )));
        }
        if let Some(text) = info.stream {
            let mut out = std::io::stderr();
            out.write_all(text.as_bytes()).ok();
            out.flush().ok();
        }
    }
    Ok(())
}

/// Pushes an image with the credentials of `~/.docker/config.json`, one line per layer event.
async fn push(d: &Docker, image: &str) -> ScriptResult<()> {
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    };
    let creds = registry_credentials(&registry_of(image));
    let mut stream = d.push_image(
        &name,
        Some(PushImageOptions {
            tag: Some(tag),
            ..Default::default()
        }),
        creds,
    );
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| failed(&format!("pushing {image}"), e))?;
        if let Some(detail) = info.error_detail {
            return Err(script_err(format!(
                "pushing {image}: {}",
                detail.message.unwrap_or_default()
            )));
        }
        if let Some(status) = info.status {
            if status != last && !status.starts_with("Pushing") {
                eprintln!("{image}: {status}");
                last = status;
            }
        }
    }
    Ok(())
}

/// Registers the image methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.build(context_dir: string, tag: string, build_args: map)").doc(
        "Builds an image from a local folder with these build arguments, showing the build's \
         output; fails with the build's error.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, dir: &str, tag: &str, args: Map| -> ScriptResult<()> {
            let args = args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            h.block(build(&e.docker, Path::new(dir), tag, args))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.push(image: string)")
        .doc("Pushes an image to its registry with the credentials `docker login` stored.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, image: &str| -> ScriptResult<()> {
            h.block(push(&e.docker, image))
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.image_digests(image: string) -> array")
        .doc("The repo digests an image has (after a push or pull); [] when it has none.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, image: &str| -> ScriptResult<Array> {
            let inspect =
                h.block(async { e.docker.inspect_image(image).await.map_err(engine_error) })?;
            Ok(inspect
                .repo_digests
                .unwrap_or_default()
                .into_iter()
                .map(Dynamic::from)
                .collect())
        },
    );
}
