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

/// A program started by [`spawn`]: its pid, and the task that waits for it (killing its
/// process group at the deadline, or when told to).
pub struct Running {
    pub pid: u32,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<Outcome, String>>,
}

impl Drop for Running {
    /// A run nobody waits for any more ends with its group (Ctrl-C during `process::run`).
    fn drop(&mut self) {
        if !self.done.is_finished() {
            kill_group(self.pid);
        }
    }
}

/// How long a program told to end (SIGTERM) has before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// SIGKILL to the process group `pid` leads: the program and whatever it started.
fn kill_group(pid: u32) {
    signal_group(pid, libc::SIGKILL);
}

fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: killpg with a process group wsm created for its own child.
    unsafe { libc::killpg(pid as libc::pid_t, signal) };
}

/// Starts `argv` in a process group of its own, which dies with wsm: the parent-death signal
/// `on_parent_death` reaches it however wsm ends (SIGKILL included). A wsm child given SIGTERM
/// takes its own children's groups down with it, so a runner killed mid-job leaves nothing
/// behind. A task waits for it until it ends or `timeout` passes (then the group is killed).
/// Must be called inside the runtime.
pub fn spawn(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    max_output: usize,
    echo: bool,
    on_parent_death: libc::c_int,
) -> Result<Running, String> {
    let (prog, args) = argv.split_first().ok_or("process::run needs a program")?;
    let started = Instant::now();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, on_parent_death as libc::c_ulong) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the signal was asked for.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {prog}: {e}"))?;
    let pid = child.id().unwrap_or(0);
    let tail = Arc::new(Mutex::new(Tail {
        bytes: Vec::new(),
        max: max_output,
        dropped: false,
    }));
    let out = tokio::spawn(pump(child.stdout.take().unwrap(), tail.clone(), echo));
    let err = tokio::spawn(pump(child.stderr.take().unwrap(), tail.clone(), echo));
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let prog = prog.clone();
    let done = tokio::spawn(async move {
        let (status, timed_out) = tokio::select! {
            status = child.wait() => (status.map_err(|e| format!("waiting for {prog}: {e}"))?, false),
            r = tokio::time::timeout(timeout, killed) => {
                // SIGTERM first, so a wsm job ends what it started; SIGKILL after a grace.
                signal_group(pid, libc::SIGTERM);
                if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                    kill_group(pid);
                    let _ = child.kill().await;
                }
                (child.wait().await.map_err(|e| e.to_string())?, r.is_err())
            }
        };
        // What the program started goes with it; a grandchild may keep the pipes open: give
        // the readers a moment, not forever.
        kill_group(pid);
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
    });
    Ok(Running {
        pid,
        kill: Some(kill),
        done,
    })
}

/// Runs `argv` until it ends or `timeout` passes (then it is killed).
pub async fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    max_output: usize,
    echo: bool,
) -> Result<Outcome, String> {
    let mut r = spawn(argv, env, timeout, max_output, echo, libc::SIGKILL)?;
    finish(&mut r).await
}

/// The outcome of a run, waiting for it to end.
async fn finish(r: &mut Running) -> Result<Outcome, String> {
    (&mut r.done)
        .await
        .map_err(|e| format!("waiting for the program: {e}"))?
}

/// A program `process::start` started, as scripts hold it.
#[derive(Clone)]
pub struct Child(Arc<std::sync::Mutex<ChildState>>);

struct ChildState {
    running: Option<Running>,
    outcome: Option<Map>,
    pid: i64,
}

fn outcome_map(o: Outcome) -> Map {
    let mut r = Map::new();
    r.insert("code".into(), Dynamic::from_int(o.code));
    r.insert("timed_out".into(), o.timed_out.into());
    r.insert("output".into(), o.output.into());
    r.insert("truncated".into(), o.truncated.into());
    r.insert("seconds".into(), Dynamic::from_float(o.seconds));
    r
}

/// The options of `process::run` and `process::start`.
fn options(argv: Array, opts: &Map) -> (Vec<String>, Vec<(String, String)>, Duration, usize, bool) {
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
    (argv, env, timeout, max, echo)
}

/// The child's outcome when it has ended within `wait`; None while it runs.
fn poll(h: &Host, c: &Child, wait: Duration) -> ScriptResult<Option<Map>> {
    let mut s = c.0.lock().expect("child");
    if let Some(o) = &s.outcome {
        return Ok(Some(o.clone()));
    }
    let Some(r) = s.running.as_mut() else {
        return Ok(None);
    };
    let ended = h.block(async {
        match tokio::time::timeout(wait, finish(r)).await {
            Ok(o) => o.map(Some).map_err(script_err),
            Err(_) => Ok(None),
        }
    })?;
    if let Some(o) = ended {
        let m = outcome_map(o);
        s.outcome = Some(m.clone());
        s.running = None;
        return Ok(Some(m));
    }
    Ok(None)
}

/// Whether any process of group `pid` is left.
fn group_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the group has a member.
    unsafe { libc::killpg(pid as libc::pid_t, 0) == 0 }
}

/// Ends process group `pid`: SIGTERM, then SIGKILL after [`GRACE`]; returns once it is empty.
async fn end_group(pid: u32) -> Result<(), String> {
    for (signal, wait) in [
        (libc::SIGTERM, GRACE),
        (libc::SIGKILL, Duration::from_secs(3)),
    ] {
        signal_group(pid, signal);
        let until = Instant::now() + wait;
        while group_alive(pid) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !group_alive(pid) {
            return Ok(());
        }
    }
    Err(format!("process group {pid} is still there"))
}

/// Adds `cleanup::end_group` to the `cleanup::` module.
pub fn register_cleanup(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("cleanup::end_group(pid: int, what: string) -> int").doc(
        "Ends the process group `pid` (a `Child`'s) when the command ends by an error, Ctrl-C or \
         SIGTERM, unless run or cancelled first: SIGTERM, SIGKILL after 5 s, and returns once \
         the group is gone. Returns its id.",
    );
    prim.set_in(m, move |pid: i64, what: &str| -> ScriptResult<i64> {
        let pid =
            u32::try_from(pid).map_err(|_| script_err(format!("{pid} is not a process id")))?;
        if pid < 2 {
            return Err(script_err(format!(
                "{pid} is not a process group wsm started"
            )));
        }
        let action = super::cleanup::Action::new(move || end_group(pid));
        Ok(h.cleanups.add(what, action))
    });
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
            "Runs a program to its end: `#{code, timed_out, output, truncated, seconds}`. At the \
             deadline its process group gets SIGTERM, then SIGKILL 5 s later. Fails only when it \
             cannot start.",
        );
    prim.set_in(&mut m, move |argv: Array, opts: Map| -> ScriptResult<Map> {
        check_opts("process::run", &opts, RUN_OPTS)?;
        let (argv, env, timeout, max, echo) = options(argv, &opts);
        let o = h.block(async {
            run(&argv, &env, timeout, max, echo)
                .await
                .map_err(script_err)
        })?;
        Ok(outcome_map(o))
    });
    let h = host.clone();
    let prim = Prim::new("process::start(argv: array, opts: map) -> Child")
        .opts(RUN_OPTS)
        .doc(
            "Starts a program as `process::run` does (the same opts) and returns at once. It runs \
             in a process group of its own, which is ended at the deadline and gets SIGTERM \
             when wsm dies, however it dies (a wsm job then ends what it started), so a runner \
             killed mid-job leaves nothing running.",
        );
    prim.set_in(
        &mut m,
        move |argv: Array, opts: Map| -> ScriptResult<Child> {
            check_opts("process::start", &opts, RUN_OPTS)?;
            let (argv, env, timeout, max, echo) = options(argv, &opts);
            let _rt = h.rt.enter();
            let r = spawn(&argv, &env, timeout, max, echo, libc::SIGTERM).map_err(script_err)?;
            Ok(Child(Arc::new(std::sync::Mutex::new(ChildState {
                pid: i64::from(r.pid),
                running: Some(r),
                outcome: None,
            }))))
        },
    );
    let started = Instant::now();
    let prim = Prim::new("process::clock() -> float").doc(
        "Seconds on this process's monotonic clock (from an arbitrary start): how long something \
         lasted, undisturbed by changes of the wall clock.",
    );
    prim.set_in(&mut m, move || -> ScriptResult<f64> {
        Ok(started.elapsed().as_secs_f64())
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
    engine.register_type_with_name::<Child>("Child");
    let prim = Prim::new("child.pid -> int")
        .doc("The process id of a program `process::start` started (and of its process group).");
    prim.register(engine, |c: &mut Child| c.0.lock().expect("child").pid);
    let h = host.clone();
    let prim = Prim::new("child.wait(ms: int) -> map").doc(
        "The outcome (as `process::run` gives it) once the program has ended; () when it still \
         runs after `ms` milliseconds.",
    );
    prim.register(
        engine,
        move |c: &mut Child, ms: i64| -> ScriptResult<Dynamic> {
            let wait = Duration::from_millis(ms.max(0) as u64);
            Ok(poll(&h, c, wait)?
                .map(Dynamic::from_map)
                .unwrap_or(Dynamic::UNIT))
        },
    );
    let prim = Prim::new("child.kill()").doc(
        "Ends the program and what it started: SIGTERM to its process group, SIGKILL 5 s later; \
         `wait` then gives its outcome.",
    );
    prim.register(engine, |c: &mut Child| {
        let mut s = c.0.lock().expect("child");
        if let Some(r) = s.running.as_mut() {
            if let Some(k) = r.kill.take() {
                let _ = k.send(());
            }
        }
    });
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
