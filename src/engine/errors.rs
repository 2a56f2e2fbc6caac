//! What the user sees when a command fails: one plain line on stderr, the usage line for bad
//! input, and the exit code (0 success, 1 failed, 2 bad usage or input, 130 interrupted).

use rhai::{Engine, EvalAltResult, Map};

/// A failure to report: exit code and one-line message (plus the usage line for code 2).
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    pub usage: Option<String>,
}

impl CliError {
    /// Bad usage or input: exit code 2, with the usage line when there is one.
    pub fn usage(message: impl Into<String>, usage: Option<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
            usage,
        }
    }

    /// The operation failed: exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
            usage: None,
        }
    }

    /// Prints the error as `error: …` and `usage: …` lines on stderr, secret values masked.
    pub fn print(&self) {
        if !self.message.is_empty() {
            eprintln!("error: {}", crate::host::secrets::mask_text(&self.message));
        }
        if let Some(u) = &self.usage {
            eprintln!("usage: {u}");
        }
    }

    /// Turns the error back into a script error, for commands run from a script (`wsm(…)`).
    pub fn into_script_error(self) -> Box<EvalAltResult> {
        if self.code == 2 && self.usage.is_none() {
            crate::host::input_err(self.message)
        } else if self.code == 2 {
            crate::host::usage_err(self.message)
        } else {
            crate::host::script_err(self.message)
        }
    }
}

/// The innermost error of a chain of function-call and module wrappers.
fn root_cause(err: &EvalAltResult) -> (&EvalAltResult, Option<String>) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, pos) => {
            let (e, loc) = root_cause(inner);
            (
                e,
                loc.or_else(|| Some(format!("{src}:{}", pos.line().unwrap_or(0)))),
            )
        }
        EvalAltResult::ErrorInModule(origin, inner, pos) => {
            let (e, loc) = root_cause(inner);
            let line = e.position().line().or(pos.line()).unwrap_or(0);
            (e, loc.or_else(|| Some(format!("{origin}:{line}"))))
        }
        e => (e, None),
    }
}

/// Turns a script error into what the user sees. `engine`, when given, names the closest
/// functions to one that was not found.
pub fn to_cli_error(
    err: &EvalAltResult,
    origin: &str,
    usage: Option<String>,
    engine: Option<&Engine>,
) -> CliError {
    let (cause, inner_loc) = root_cause(err);
    match cause {
        // `exit(n)` in a script: the exit code of a command it ran, say.
        EvalAltResult::Exit(value, _) => CliError {
            code: value.as_int().map(|c| c as i32).unwrap_or(0),
            message: String::new(),
            usage: None,
        },
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(map) = value.read_lock::<Map>() {
                if let Some(msg) = map.get("usage") {
                    let usage = usage.filter(|_| !map.contains_key("input"));
                    return CliError::usage(msg.to_string(), usage);
                }
                if let Some(code) = map.get("exit_code").and_then(|c| c.as_int().ok()) {
                    return CliError {
                        code: code as i32,
                        message: String::new(),
                        usage: None,
                    };
                }
            }
            CliError::failed(value.to_string())
        }
        EvalAltResult::ErrorTerminated(..) if super::limits::current().message(cause).is_some() => {
            CliError::failed(super::limits::current().message(cause).unwrap_or_default())
        }
        EvalAltResult::ErrorTerminated(..) => CliError {
            code: 130,
            message: "interrupted".into(),
            usage: None,
        },
        EvalAltResult::ErrorTooManyOperations(..) | EvalAltResult::ErrorDataTooLarge(..) => {
            let limits = super::limits::current();
            CliError::failed(limits.message(cause).unwrap_or_else(|| cause.to_string()))
        }
        EvalAltResult::ErrorParsing(..) | EvalAltResult::ErrorModuleNotFound(..) => {
            let loc = inner_loc
                .unwrap_or_else(|| format!("{origin}:{}", cause.position().line().unwrap_or(0)));
            CliError::failed(format!("{loc}: {cause}"))
        }
        other => {
            let pos = other.position();
            let loc = inner_loc.unwrap_or_else(|| format!("{origin}:{}", pos.line().unwrap_or(0)));
            let hint = match other {
                EvalAltResult::ErrorFunctionNotFound(sig, _) => engine
                    .and_then(|e| super::docs::suggest(e, sig))
                    .map(|s| format!("; {s}"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            CliError::failed(format!("{other} ({loc}){hint}"))
        }
    }
}
