//! `process::run` — a program run to its end with a deadline, its output (stdout and stderr,
//! in the order they arrived) captured up to a size and also passed on. A job's runner runs
//! each job this way, so one that hangs is killed and one that talks a lot keeps its tail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, Map, Module};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Mutex;

use super::doc::{check_opts, Opt, Prim};
use super::{script_err, Host, ScriptResult};

/// What a finished run gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The exit code; -1 when killed by a signal (including the deadline's).
    pub code: i64,
    pub timed_out: bool,
    /// The last `max_output` bytes of what it wrote, and whether earlier ones were dropped.
    pub output: String,
    pub truncated: bool,
    pub seconds: f64,
}

/// Keeps the last `max` bytes written to it.
struct Tail {
    bytes: Vec<u8>,
    max: usize,
    dropped: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.max {
            let cut = self.bytes.len() - self.max;
            self.bytes.drain(..cut);
            self.dropped = true;
        }
    }
}

async fn pump(mut from: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>, echo: bool) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if echo {
            super::stdio::write_stdout(&buf[..n]);
        }
        tail.lock().await.push(&buf[..n]);
    }
}

/// Runs `argv` until it ends or `timeout` passes (then it is killed).
pub async fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    max_output: usize,
    echo: bool,
) -> Result<Outcome, String> {
    let (prog, args) = argv.split_first().ok_or("process::run needs a program")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let tail = Arc::new(Mutex::new(Tail {
        bytes: Vec::new(),
        max: max_output,
        dropped: false,
    }));
    let out = tokio::spawn(pump(child.stdout.take().unwrap(), tail.clone(), echo));
    let err = tokio::spawn(pump(child.stderr.take().unwrap(), tail.clone(), echo));
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (
            status.map_err(|e| format!("waiting for {prog}: {e}"))?,
            false,
        ),
        Err(_) => {
            let _ = child.kill().await;
            (child.wait().await.map_err(|e| e.to_string())?, true)
        }
    };
    // A grandchild may keep the pipes open: give the readers a moment, not forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    let t = tail.lock().await;
    Ok(Outcome {
        code: status.code().map(i64::from).unwrap_or(-1),
        timed_out,
        output: String::from_utf8_lossy(&t.bytes).into_owned(),
        truncated: t.dropped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `process::run`'s options.
const RUN_OPTS: &[Opt] = &[
    ("timeout", "seconds, 3600; then it is killed"),
    ("max_output", "bytes of output kept, the last ones; 65536"),
    ("echo", "false; true: also writes its output to stdout"),
    ("env", "a map added to its environment"),
];

/// Registers the `process::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();
    let h = host.clone();
    let prim = Prim::new("process::run(argv: array, opts: map) -> map")
        .opts(RUN_OPTS)
        .doc(
            "Runs a program to its end: `#{code, timed_out, output, truncated, seconds}`. Fails \
             only when it cannot start.",
        );
    prim.set_in(&mut m, move |argv: Array, opts: Map| -> ScriptResult<Map> {
        check_opts("process::run", &opts, RUN_OPTS)?;
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let int = |k: &str, d: i64| opts.get(k).and_then(|v| v.as_int().ok()).unwrap_or(d);
        let timeout = Duration::from_secs(int("timeout", 3600).max(1) as u64);
        let max = int("max_output", 65536).clamp(0, 16 << 20) as usize;
        let echo = opts
            .get("echo")
            .and_then(|v| v.as_bool().ok())
            .unwrap_or(false);
        let env: Vec<(String, String)> = opts
            .get("env")
            .and_then(|v| v.clone().try_cast::<Map>())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let o = h.block(async {
            run(&argv, &env, timeout, max, echo)
                .await
                .map_err(script_err)
        })?;
        let mut r = Map::new();
        r.insert("code".into(), Dynamic::from_int(o.code));
        r.insert("timed_out".into(), o.timed_out.into());
        r.insert("output".into(), o.output.into());
        r.insert("truncated".into(), o.truncated.into());
        r.insert("seconds".into(), Dynamic::from_float(o.seconds));
        Ok(r)
    });
    let prim = Prim::new("process::shell_line(words: array) -> string").doc(
        "The words as one line that a POSIX shell splits back into the same words: each \
         quoted where it must be (`a 'b c' ''`).",
    );
    prim.set_in(&mut m, |words: Array| -> ScriptResult<String> {
        Ok(shell_words::join(words.iter().map(|w| w.to_string())))
    });
    let prim = Prim::new("process::exe() -> string").doc("The path of the running wsm binary.");
    prim.set_in(&mut m, || -> ScriptResult<String> {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .map_err(|e| script_err(format!("cannot find wsm's own binary: {e}")))
    });
    engine.register_static_module("process", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str, timeout: u64, max: usize) -> Outcome {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let argv = ["sh", "-c", script].map(String::from);
        let env = [("WSM_TEST_VALUE".to_string(), "x".to_string())];
        rt.block_on(run(&argv, &env, Duration::from_secs(timeout), max, false))
            .unwrap()
    }

    #[test]
    fn output_and_exit_code_are_kept() {
        let o = run_sh("echo out; echo err >&2; exit 3", 10, 1000);
        assert_eq!(o.code, 3);
        assert!(
            o.output.contains("out\n") && o.output.contains("err\n"),
            "{o:?}"
        );
        assert!(!o.timed_out && !o.truncated);
    }

    #[test]
    fn the_deadline_kills_and_the_tail_is_kept() {
        let o = run_sh("seq 1 100000; sleep 30", 1, 20);
        assert!(o.timed_out, "{o:?}");
        assert!(o.seconds < 10.0, "{o:?}");
        assert!(
            o.truncated && o.output.ends_with("99999\n100000\n"),
            "{o:?}"
        );
    }
}
