//! `archive::` — moving files between this machine and containers as tar streams: a consistent
//! tar.gz dump of a directory that is being written, and docker-cp style copies. Everything
//! streams; nothing is held in memory whole, and nothing half-written is left under the name
//! the user asked for.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;
use rhai::{Dynamic, Engine, Map, Module};
use sha2::{Digest, Sha256};

use super::doc::{check_opts, Opt, Prim};
use super::docker::EngineHandle;
use super::output::{self, OutputFile};
use super::{script_err, Host, ScriptResult};

mod gzip;
mod live;
mod stream;
mod volume;

pub(crate) use stream::Batch;
use stream::{AbortOnDrop, Batcher, ChanReader};

/// Lists every file under a container directory with its size and modification time (to the
/// nanosecond): cheap to take, and it changes whenever anything is written.
fn remote_listing_cmd(dir: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "cd \"$1\" && find . -type f -printf '%P\\t%s\\t%T@\\n' | LC_ALL=C sort".into(),
        "listing".into(),
        dir.into(),
    ]
}

/// A directory's files as (path, size), and the fingerprint of the full listing.
#[derive(Debug, PartialEq)]
struct Listing {
    files: Vec<(String, u64)>,
    fingerprint: String,
}

async fn remote_listing(e: &EngineHandle, container: &str, dir: &str) -> ScriptResult<Listing> {
    let (code, out, err) =
        super::docker::exec_collect(&e.docker, container, remote_listing_cmd(dir)).await?;
    if code != 0 {
        return Err(script_err(format!(
            "listing {dir} in the container failed: {}",
            err.trim()
        )));
    }
    let files = out
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
        })
        .collect();
    Ok(Listing {
        files,
        fingerprint: hex::encode(Sha256::digest(out.as_bytes())),
    })
}

/// The files of a tar stream (paths below its top folder) with their sizes, and a checksum over
/// their contents: sha256sum lines of every file, sorted by path, hashed again — what
/// `find . -type f | sort | xargs sha256sum | sha256sum` gives in the directory.
fn summarize(tar_stream: impl Read) -> std::io::Result<(Vec<(String, u64)>, String)> {
    summarize_with(tar_stream, true)
}

/// `summarize`, hashing the files' contents only when `contents` (else the checksum is ""):
/// a volume backup needs the listing, and hashing every byte a second time costs a sixth of
/// its CPU (BENCHMARKS.md, the volume phase).
fn summarize_with(
    tar_stream: impl Read,
    contents: bool,
) -> std::io::Result<(Vec<(String, u64)>, String)> {
    let mut tar = tar::Archive::new(tar_stream);
    let mut entries: Vec<(String, u64, String)> = Vec::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let rel: PathBuf = path.components().skip(1).collect();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if contents {
                hasher.update(&buf[..n]);
            }
        }
        entries.push((
            rel.display().to_string(),
            size,
            hex::encode(hasher.finalize()),
        ));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let files = || entries.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
    if !contents {
        return Ok((files(), String::new()));
    }
    let mut all = Sha256::new();
    for (name, _, hash) in &entries {
        all.update(format!("{hash}  ./{name}\n").as_bytes());
    }
    Ok((files(), hex::encode(all.finalize())))
}

/// `summarize` for a tar.gz file.
pub fn archive_summary(archive: &Path) -> std::io::Result<(Vec<(String, u64)>, String)> {
    summarize(flate2::read::GzDecoder::new(std::fs::File::open(archive)?))
}

/// The content checksum of a tar.gz's files (see `archive_summary`).
pub fn tree_checksum(archive: &Path) -> std::io::Result<String> {
    archive_summary(archive).map(|(_, sum)| sum)
}

/// Streams `path` of a container (the engine's tar) in batches to every sender; returns the
/// bytes read. A receiver that stopped early ends it quietly (its worker reports its own
/// error); the senders are dropped at the end, which ends the receivers' input.
async fn pump(
    docker: bollard::Docker,
    container: String,
    path: String,
    host: String,
    senders: Vec<tokio::sync::mpsc::Sender<Batch>>,
) -> Result<u64, String> {
    let mut stream = docker.download_from_container(
        &container,
        Some(DownloadFromContainerOptions { path: path.clone() }),
    );
    let mut bytes = 0u64;
    let mut batcher = Batcher::default();
    loop {
        let (batch, end) = match stream.next().await {
            Some(Ok(c)) => {
                bytes += c.len() as u64;
                (batcher.push(c), false)
            }
            Some(Err(err)) => {
                return Err(format!(
                    "copying {path} out of the container on {host}: {err}"
                ))
            }
            None => (batcher.take(), true),
        };
        if let Some(b) = batch {
            for tx in &senders {
                if tx.send(b.clone()).await.is_err() {
                    return Ok(bytes);
                }
            }
        }
        if end {
            return Ok(bytes);
        }
    }
}

/// What one copy of a directory produced.
struct Copied {
    bytes: u64,
    files: Vec<(String, u64)>,
    checksum: String,
    /// The SHA-256 of the gzip file, when asked for.
    sha256: Option<String>,
}

/// Streams `dir` of a container into a gzip file at `tmp` (`gzip::write`: deflated on every CPU,
/// blocks that do not compress stored), and at the same time reads the same tar stream to list
/// and checksum its files on a thread of its own; at most a few MiB are in memory whatever the
/// directory's size. With `hash`, the gzip file's SHA-256 is computed as it is written; with
/// `contents`, the files' contents are checksummed (else `checksum` is "").
async fn download_gz(
    e: &EngineHandle,
    container: &str,
    dir: &str,
    tmp: &std::fs::File,
    level: u32,
    hash: bool,
    contents: bool,
) -> ScriptResult<Copied> {
    let file = tmp.try_clone().map_err(script_err)?;
    let (gz_tx, mut gz_rx) = tokio::sync::mpsc::channel::<Batch>(4);
    let (sum_tx, sum_rx) = tokio::sync::mpsc::channel::<Batch>(4);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let compressor = tokio::task::spawn_blocking(move || {
        gzip::write(
            std::iter::from_fn(|| gz_rx.blocking_recv()),
            file,
            level,
            workers,
            hash,
        )
    });
    let summary = tokio::task::spawn_blocking(move || {
        let mut reader = ChanReader::new(sum_rx);
        let summary = summarize_with(&mut reader, contents);
        // The tar's end blocks (and anything after) must still be taken off the channel, or
        // the sender would stop feeding the compressor and the dump would lose its tail.
        std::io::copy(&mut reader, &mut std::io::sink())?;
        summary
    });
    // The body is read by a task on the runtime, beside the connection's own task: handing each
    // chunk over stays on one worker thread instead of waking the thread that blocks on this
    // future. Aborted if this future is dropped (Ctrl-C).
    let (docker, container, path, host) = (
        e.docker.clone(),
        container.to_string(),
        dir.to_string(),
        e.host.clone(),
    );
    let mut reader = AbortOnDrop(tokio::spawn(pump(
        docker,
        container,
        path,
        host,
        vec![gz_tx, sum_tx],
    )));
    // The task's end drops the senders: the compressor and the summary finish their input.
    let streamed = (&mut reader.0).await.map_err(script_err)?;
    let written = compressor.await.map_err(script_err)?;
    let summed = summary.await.map_err(script_err)?;
    let bytes = streamed.map_err(script_err)?;
    let sha256 = written.map_err(|err| script_err(format!("writing the dump: {err}")))?;
    let (files, checksum) =
        summed.map_err(|err| script_err(format!("reading the copy of {dir}: {err}")))?;
    Ok(Copied {
        bytes,
        files,
        checksum,
        sha256,
    })
}

/// Dumps `dir` of a container to `out` (tar.gz) consistently: copy, and accept the copy only
/// when the directory's listing (paths, sizes, nanosecond mtimes) was the same before and after
/// and the archive holds exactly those files with those sizes.
async fn dump(
    e: &EngineHandle,
    container: &str,
    dir: &str,
    out: &Path,
    attempts: u32,
    level: u32,
) -> ScriptResult<Map> {
    let out = OutputFile::check(out).map_err(super::usage_err)?;
    for attempt in 1..=attempts {
        let tmp = out.temp_file(true).map_err(|err| {
            super::usage_err(format!("cannot write beside {}: {err}", out.path.display()))
        })?;
        let before = remote_listing(e, container, dir).await?;
        let Copied {
            bytes,
            files,
            checksum,
            ..
        } = download_gz(e, container, dir, tmp.as_file(), level, false, true).await?;
        let after = remote_listing(e, container, dir).await?;
        if before != after {
            eprintln!("dump-db: {dir} changed while it was copied (attempt {attempt} of {attempts}); copying again");
            continue;
        }
        if files != after.files {
            eprintln!("dump-db: the copy of {dir} does not list the files the node has (attempt {attempt} of {attempts}); copying again");
            continue;
        }
        out.commit(tmp).map_err(|err| {
            script_err(format!(
                "cannot rename the dump to {}: {err}",
                out.path.display()
            ))
        })?;
        let mut m = Map::new();
        m.insert("consistent".into(), true.into());
        m.insert("attempts".into(), Dynamic::from(attempt as i64));
        m.insert("checksum".into(), checksum.into());
        m.insert("bytes".into(), Dynamic::from(bytes as i64));
        m.insert("files".into(), Dynamic::from(files.len() as i64));
        return Ok(m);
    }
    // Not an error: the caller decides what to do about a directory that never held still.
    let mut m = Map::new();
    m.insert("consistent".into(), false.into());
    m.insert("attempts".into(), Dynamic::from(attempts as i64));
    Ok(m)
}

/// Uploads local paths into a container directory as one tar stream.
async fn upload(
    e: &EngineHandle,
    container: &str,
    sources: Vec<PathBuf>,
    dest_dir: &str,
) -> ScriptResult<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    // Build the tar on a blocking thread, handing chunks to the request body as they come.
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        struct ChanWriter(tokio::sync::mpsc::Sender<bytes::Bytes>);
        impl Write for ChanWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(bytes::Bytes::copy_from_slice(buf))
                    .map_err(|_| std::io::Error::other("upload stopped"))?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            ChanWriter(tx),
        ));
        builder.follow_symlinks(false);
        for src in sources {
            let name = src
                .file_name()
                .ok_or_else(|| {
                    std::io::Error::other(format!("{} has no file name", src.display()))
                })?
                .to_owned();
            if src.is_dir() {
                builder.append_dir_all(&name, &src)?;
            } else {
                builder.append_path_with_name(&src, &name)?;
            }
        }
        builder.into_inner()?.flush()
    });
    let body = tokio_stream_from(rx);
    let result = e
        .docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: dest_dir.to_string(),
                ..Default::default()
            }),
            bollard::body_stream(body),
        )
        .await;
    let written = writer.await.map_err(script_err)?;
    result.map_err(|err| script_err(format!("copying into the container: {err}")))?;
    written.map_err(|err| script_err(format!("reading local files: {err}")))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> impl futures_util::Stream<Item = bytes::Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Downloads a container path and unpacks it under a local directory, as `docker cp` does.
async fn download(e: &EngineHandle, container: &str, src: &str, dest: &Path) -> ScriptResult<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(8);
    let target = dest.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut archive = tar::Archive::new(ChanReader::new(rx));
        archive.set_preserve_permissions(true);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let into = target.join(entry.path()?);
            output::check_unpack_target(&into).map_err(std::io::Error::other)?;
            entry.unpack_in(&target)?;
        }
        Ok(())
    });
    let mut stream = e.docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: src.to_string(),
        }),
    );
    let mut failure = None;
    let mut batcher = Batcher::default();
    loop {
        let batch = match stream.next().await {
            Some(Ok(c)) => batcher.push(c),
            Some(Err(err)) => {
                failure = Some(format!("copying {src} out of the container: {err}"));
                break;
            }
            None => {
                if let Some(last) = batcher.take() {
                    let _ = tx.send(last).await;
                }
                break;
            }
        };
        if let Some(b) = batch {
            if tx.send(b).await.is_err() {
                break;
            }
        }
    }
    drop(tx);
    let unpacked = reader.await.map_err(script_err)?;
    if let Some(f) = failure {
        return Err(script_err(f));
    }
    unpacked.map_err(|err| script_err(format!("writing under {}: {err}", dest.display())))
}

/// `archive::dump`'s options.
const DUMP_OPTS: &[Opt] = &[
    ("attempts", "5: copies made at most"),
    (
        "level",
        "gzip 0-9, 1: deflated on every CPU in independent 1 MiB blocks, and a block that does \
         not compress is stored; 0 stores everything",
    ),
];

/// Registers the `archive::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();

    let h = host.clone();
    let prim = Prim::new(
        "archive::dump(engine: Engine, container: string, dir: string, out_file: string, \
         opts: map) -> map",
    )
    .opts(DUMP_OPTS)
    .doc(
        "Writes a consistent tar.gz of a container folder: copied until two copies agree. Returns \
         `#{consistent: true, attempts, checksum, bytes, files}`, or `#{consistent: false, \
         attempts}` when the folder changed during every copy (nothing written).",
    );
    prim.set_in(
        &mut m,
        move |e: EngineHandle,
              container: &str,
              dir: &str,
              out: &str,
              opts: Map|
              -> ScriptResult<Map> {
            check_opts("archive::dump", &opts, DUMP_OPTS)?;
            let int = |k: &str, d: i64| opts.get(k).and_then(|v| v.as_int().ok()).unwrap_or(d);
            let attempts = int("attempts", 5).clamp(1, 100) as u32;
            let level = int("level", 1).clamp(0, 9) as u32;
            h.block(dump(&e, container, dir, Path::new(out), attempts, level))
        },
    );

    let prim = Prim::new("archive::checksum(file: string) -> string")
        .doc("The checksum of a tar.gz's files, as `archive::dump` computes it.");
    prim.set_in(&mut m, |file: &str| -> ScriptResult<String> {
        tree_checksum(Path::new(file)).map_err(|e| script_err(format!("{file}: {e}")))
    });

    let h = host.clone();
    let prim = Prim::new(
        "archive::upload(engine: Engine, container: string, local_paths: array, \
         container_dir: string)",
    )
    .doc("Copies local files and folders into a container folder.");
    prim.set_in(
        &mut m,
        move |e: EngineHandle,
              container: &str,
              sources: rhai::Array,
              dest: &str|
              -> ScriptResult<()> {
            let sources: Vec<PathBuf> = sources
                .iter()
                .map(|s| PathBuf::from(s.to_string()))
                .collect();
            for s in &sources {
                if !s.exists() {
                    return Err(super::usage_err(format!("{} does not exist", s.display())));
                }
            }
            h.block(upload(&e, container, sources, dest))
        },
    );

    let h = host.clone();
    let prim = Prim::new(
        "archive::download(engine: Engine, container: string, container_path: string, \
         local_dest: string, may_rename: bool)",
    )
    .doc(
        "Copies a path out of a container into an existing folder, or (`may_rename`) to a new \
         name, as `docker cp` does.",
    );
    prim.set_in(
        &mut m,
        move |e: EngineHandle,
              container: &str,
              src: &str,
              dest: &str,
              may_rename: bool|
              -> ScriptResult<()> {
            let dest = Path::new(dest);
            if dest.is_dir() {
                let top = Path::new(src.trim_end_matches('/'))
                    .file_name()
                    .map(|n| dest.join(n))
                    .unwrap_or_else(|| dest.to_path_buf());
                output::check_unpack_target(&top).map_err(super::usage_err)?;
                return h.block(download(&e, container, src, dest));
            }
            if !may_rename {
                return Err(super::usage_err(format!(
                    "{} is not a directory; several sources need one",
                    dest.display()
                )));
            }
            let out = OutputFile::check(dest).map_err(super::usage_err)?;
            // Unpack beside the destination, then rename into place: no half-copied file under
            // the destination's name.
            let staging = tempfile::Builder::new()
                .prefix(".wsm-cp-")
                .tempdir_in(&out.dir)
                .map_err(|err| {
                    super::usage_err(format!("cannot write into {}: {err}", out.dir.display()))
                })?;
            h.block(download(&e, container, src, staging.path()))?;
            let entry = std::fs::read_dir(staging.path())
                .map_err(script_err)?
                .flatten()
                .next()
                .ok_or_else(|| script_err(format!("{src} copied nothing")))?;
            out.replace_with(&entry.path()).map_err(|err| {
                script_err(format!("cannot move the copy to {}: {err}", dest.display()))
            })
        },
    );

    let prim = Prim::new("archive::check_output(path: string) -> string").doc(
        "Refuses (exit 2) an output file that is a device, FIFO, socket or folder, or whose \
         folder does not exist; returns the path to write.",
    );
    prim.set_in(&mut m, |path: &str| -> ScriptResult<String> {
        OutputFile::check(Path::new(path))
            .map(|o| o.path.display().to_string())
            .map_err(super::usage_err)
    });

    volume::register(&mut m, host);
    live::register(&mut m, host);
    engine.register_static_module("archive", m.into());
}
