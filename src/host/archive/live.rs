//! `archive::volume_compare`: an archive of `archive::volume_dump` against the live volume it
//! was taken from, on the node that holds it (`stack backup verify --against-live`). The volume
//! is read through a helper container as the dump reads it, and only summarised: each file's
//! path and size, and a checksum of the contents, with nothing written anywhere.

use std::path::Path;
use std::sync::Arc;

use rhai::{Array, Dynamic, Map, Module};

use super::super::doc::Prim;
use super::super::docker::EngineHandle;
use super::super::{script_err, usage_err, Host, ScriptResult};
use super::volume::{create_helper, volume_exists, MOUNT};
use super::{summarize, ChanReader};

/// Files (path, size) and the content checksum of the live volume, streamed from a helper.
async fn live_summary(
    h: &Arc<Host>,
    e: &EngineHandle,
    volume: &str,
    image: &str,
) -> ScriptResult<(Vec<(String, u64)>, String)> {
    if !volume_exists(e, volume).await? {
        return Err(script_err(format!("volume {volume} is not on {}", e.host)));
    }
    let (container, cleanup) = create_helper(h, e, volume, image, true, None).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let summary = tokio::task::spawn_blocking(move || {
        let mut reader = ChanReader::new(rx);
        let s = summarize(&mut reader);
        std::io::copy(&mut reader, &mut std::io::sink())?;
        s
    });
    let streamed = super::pump(
        e.docker.clone(),
        container.clone(),
        MOUNT.to_string(),
        e.host.clone(),
        vec![tx],
    )
    .await
    .map(|_| ())
    .map_err(|err| script_err(format!("reading volume {volume}: {err}")));
    let summed = summary.await.map_err(script_err)?;
    let removed = h.cleanups.run(cleanup).await;
    streamed?;
    removed.map_err(script_err)?;
    summed.map_err(|err| script_err(format!("reading volume {volume}: {err}")))
}

/// What differs between two listings: paths only in `archived`, only in `live`, and in both
/// with other sizes.
fn differences(
    archived: &[(String, u64)],
    live: &[(String, u64)],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let a: std::collections::BTreeMap<_, _> = archived.iter().cloned().collect();
    let l: std::collections::BTreeMap<_, _> = live.iter().cloned().collect();
    let missing = a.keys().filter(|k| !l.contains_key(*k)).cloned().collect();
    let extra = l.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
    let changed = a
        .iter()
        .filter(|(k, size)| l.get(*k).is_some_and(|s| s != *size))
        .map(|(k, _)| k.clone())
        .collect();
    (missing, extra, changed)
}

fn strings(xs: Vec<String>) -> Dynamic {
    xs.into_iter().map(Dynamic::from).collect::<Array>().into()
}

/// Adds `archive::volume_compare` to the `archive::` module.
pub(super) fn register(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new(
        "archive::volume_compare(engine: Engine, volume: string, image: string, archive: string) \
         -> map",
    )
    .doc(
        "Compares an archive of `archive::volume_dump` with the live volume on the engine's node \
         (read through a helper container from `image`, nothing written). Returns `#{same, \
         missing, extra, changed, contents_differ, files}`: paths in the archive only, in the \
         volume only, of another size; `contents_differ` when the listings match but the files' \
         contents do not; `files` the live volume's file count.",
    );
    prim.set_in(
        m,
        move |e: EngineHandle, volume: &str, image: &str, archive: &str| -> ScriptResult<Map> {
            let path = Path::new(archive).to_path_buf();
            let (archived, sum) = super::archive_summary(&path)
                .map_err(|err| usage_err(format!("{archive}: {err}")))?;
            let (live, live_sum) = h.block(live_summary(&h, &e, volume, image))?;
            let (missing, extra, changed) = differences(&archived, &live);
            let listed_same = missing.is_empty() && extra.is_empty() && changed.is_empty();
            let mut m = Map::new();
            m.insert("same".into(), (listed_same && sum == live_sum).into());
            m.insert(
                "contents_differ".into(),
                (listed_same && sum != live_sum).into(),
            );
            m.insert("files".into(), Dynamic::from(live.len() as i64));
            m.insert("missing".into(), strings(missing));
            m.insert("extra".into(), strings(extra));
            m.insert("changed".into(), strings(changed));
            Ok(m)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_side_and_the_changed_sizes() {
        let a = vec![
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("c".to_string(), 3),
        ];
        let l = vec![
            ("b".to_string(), 2),
            ("c".to_string(), 4),
            ("d".to_string(), 5),
        ];
        let (missing, extra, changed) = differences(&a, &l);
        assert_eq!(missing, ["a"]);
        assert_eq!(extra, ["d"]);
        assert_eq!(changed, ["c"]);
        assert_eq!(differences(&a, &a), (vec![], vec![], vec![]));
    }
}
