//! Opening a master (shared with later processes through `mux`, or private to this one) and
//! the engine socket forwarded through it, for `ssh::` and the Docker client alike.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use rhai::Map;

use super::{error_chain, mux, parse_target, shared_ssh, ConnectOptions};

/// A master for `target`: the shared one other wsm processes find (`mux`), or with
/// `WSM_SSH_PERSIST=0` (or no state folder) one private to this process.
pub(super) async fn open(
    target: &str,
    opts: &ConnectOptions,
) -> Result<(Session, Option<Arc<mux::Paths>>), String> {
    let (user, host, port) = parse_target(target)?;
    // ssh's own ConnectTimeout covers the TCP connect; authentication gets a deadline too.
    let deadline = opts.timeout + Duration::from_secs(10);
    let failed = |why: String| format!("cannot reach {user}@{host} over SSH: {why}");
    let persist = mux::persist_secs()?;
    let shared = if persist > 0 {
        mux::shared_dir()?
    } else {
        None
    };
    if let Some(dir) = shared {
        let paths = mux::Paths::new(&dir, &opts.cache_key(target));
        let t = opts.timeout.as_secs().to_string();
        let mut args: Vec<String> = [
            "-o",
            &format!("ConnectTimeout={t}"),
            "-o",
            &format!("ServerAliveInterval={t}"),
            "-o",
            if opts.strict {
                "StrictHostKeyChecking=yes"
            } else {
                "StrictHostKeyChecking=accept-new"
            },
            "-l",
            &user,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if let Some(p) = port {
            args.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(k) = &opts.key {
            args.extend(["-o".into(), "IdentitiesOnly=yes".into(), "-i".into()]);
            args.push(k.display().to_string());
        }
        let launch = mux::Launch {
            args,
            destination: host.clone(),
            deadline,
        };
        let session = mux::shared(&paths, persist, &launch)
            .await
            .map_err(failed)?;
        return Ok((session, Some(Arc::new(paths))));
    }
    let mut b = SessionBuilder::default();
    b.user(user.clone())
        .connect_timeout(opts.timeout)
        // A link that stops carrying packets is given up after 3 unanswered keep-alives (3 ×
        // the connect timeout), so that nothing waits on a cut link for TCP's own minutes.
        .server_alive_interval(opts.timeout)
        .known_hosts_check(if opts.strict {
            KnownHosts::Strict
        } else {
            KnownHosts::Add
        })
        // A master outlives its last use by this long, so none lingers after wsm exits.
        .control_persist(openssh::ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(60).expect("non-zero"),
        ));
    if let Some(p) = port {
        b.port(p);
    }
    if let Some(k) = &opts.key {
        b.keyfile(k);
    }
    match tokio::time::timeout(deadline, b.connect(&host)).await {
        Ok(Ok(s)) => Ok((s, None)),
        Ok(Err(e)) => Err(failed(error_chain(&e))),
        Err(_) => Err(failed(format!("no answer within {} s", deadline.as_secs()))),
    }
}

/// Local sockets forwarded to remote engines, by session key: None where the engine must be
/// dialled with `docker system dial-stdio` instead.
pub(super) static ENGINE_SOCKETS: Mutex<Vec<(String, Option<PathBuf>)>> = Mutex::new(Vec::new());

/// A local unix socket that reaches the Docker engine of `target` through its master (ssh's
/// direct-streamlocal: a connection is one channel, no process on either side), set up once
/// per master; None when the engine is not on a unix socket there or the forward is refused.
pub async fn engine_socket(target: &str) -> Result<Option<PathBuf>, String> {
    Ok(engine_socket_with(target, |_| async {}).await?.0)
}

/// `engine_socket`; when this call sets up the forward, `meanwhile` runs on it while the host
/// is asked where its engine listens, and its result is returned once that place is confirmed
/// (`mux::forward_engine_with`).
pub async fn engine_socket_with<T, F, Fut>(
    target: &str,
    meanwhile: F,
) -> Result<(Option<PathBuf>, Option<T>), String>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let opts = ConnectOptions::from_map(&Map::new());
    let key = opts.cache_key(target);
    let s = shared_ssh(target, &opts).await?;
    if let Some((_, p)) = ENGINE_SOCKETS
        .lock()
        .expect("engine sockets")
        .iter()
        .find(|(k, _)| *k == key)
    {
        return Ok((p.clone(), None));
    }
    let control = s.session.control_socket().to_path_buf();
    let (found, done) = match &s.shared {
        Some(paths) => {
            let _lock = mux::Lock::take(&paths.lock, opts.timeout).await?;
            let local = paths.engine.clone();
            // The master answered (`mux::shared`), and a new one starts without the old
            // forward: one that is there is live. Not tried by connecting to it, which would
            // open a channel to the engine for nothing.
            if local.exists() {
                (Some(local), None)
            } else {
                let (ok, done) = mux::forward_engine_with(
                    &s.session,
                    &control,
                    &local,
                    Some(&paths.remembered),
                    meanwhile,
                )
                .await;
                (ok.then_some(local), done)
            }
        }
        None => {
            // A master of this process alone still reads and keeps where the engine was in the
            // shared folder, when there is one.
            let remembered = mux::shared_dir()
                .ok()
                .flatten()
                .map(|d| mux::Paths::new(&d, &key).remembered);
            let local = control.with_file_name("docker.sock");
            let (ok, done) = mux::forward_engine_with(
                &s.session,
                &control,
                &local,
                remembered.as_deref(),
                meanwhile,
            )
            .await;
            (ok.then_some(local), done)
        }
    };
    ENGINE_SOCKETS
        .lock()
        .expect("engine sockets")
        .push((key, found.clone()));
    Ok((found, done))
}
