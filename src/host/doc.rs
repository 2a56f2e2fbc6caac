//! A primitive's doc is written once, where it is registered, and kept in Rhai's own function
//! metadata (`FuncRegistration::with_comments`, `with_params_info`): `help`, completion, the
//! suggestions for a misspelt name and `wsm doc` read it back from the engine
//! (`engine::docs`), so they cannot drift from what is registered.
//!
//! ```ignore
//! let prim = Prim::new("e.deploy(stack: string, plan: map, opts: map) -> array")
//!     .opts(DEPLOY_OPTS)
//!     .doc("Creates or updates a stack's networks, secrets, configs and services …");
//! prim.register(
//!     engine,
//!     move |e: &mut EngineHandle, stack: &str, plan: Dynamic, opts: Map| -> ScriptResult<Array> {
//!         check_opts("e.deploy", &opts, DEPLOY_OPTS)?;
//!         …
//! ```
//!
//! The doc is bound first and the registration keeps the shape of `engine.register_fn(name, f)`
//! (`prim.set_in(&mut m, f)` for `m.set_native_fn(name, f)`), so the function's body stays
//! where it was.
//!
//! Only an engine built to show docs keeps them (`documented`: `help`, `wsm doc`, the REPL,
//! completion): for a command, writing every primitive's doc into the metadata cost a tenth of
//! a `stack status`'s instructions, and nothing reads it (issue 28). An error naming a missing
//! function has its documented engine built then (`engine::docs::suggest`).
//!
//! The signature is how a script writes the call: `module::name(…)` for a module function,
//! `x.name(…)` for a method (`x` the receiver), `x.name -> T` for a getter, `name(…)` for a
//! global function. Its parameter names are recorded with the Rust types of the function
//! registered, so a test compares the two (`engine::docs`). An overload carries only its
//! signature: the text and options of its name are given once, on one of them.

use std::cell::Cell;

use rhai::{Engine, FuncRegistration, Map, Module, RhaiNativeFunc};

use super::{usage_err, ScriptResult};

/// One option of a primitive's options map: its key and what it does (its default first,
/// e.g. "true: removes what the plan no longer has").
pub type Opt = (&'static str, &'static str);

/// The first line of the comments holding a primitive's doc: its signature.
pub const SIG: &str = "/// sig: ";
/// A line of the comments naming one option.
pub const OPTION: &str = "/// option ";

thread_local! {
    /// Whether the primitives registered now keep their docs (`documented`).
    static KEEP_DOCS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` (the registration of an engine's primitives) with each primitive's doc kept in
/// the engine's function metadata, for what reads it (`engine::docs`).
pub fn documented<T>(build: impl FnOnce() -> T) -> T {
    /// Puts the previous setting back however `build` ends.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            KEEP_DOCS.set(self.0);
        }
    }
    let _restore = Restore(KEEP_DOCS.replace(true));
    build()
}

/// A primitive's doc, to be registered with its function.
#[must_use = "a primitive is registered by `register` or `set_in`"]
pub struct Prim {
    sig: &'static str,
    text: &'static str,
    opts: &'static [Opt],
}

impl Prim {
    /// A primitive written as a script calls it (see the module doc).
    pub fn new(sig: &'static str) -> Self {
        Prim {
            sig,
            text: "",
            opts: &[],
        }
    }

    /// What it does, its arguments, what it returns, its errors.
    pub fn doc(mut self, text: &'static str) -> Self {
        self.text = text;
        self
    }

    /// The keys its options map takes, listed in its doc; `check_opts` refuses the others and
    /// a test fails when it reads one not listed (`engine::docs`).
    pub fn opts(mut self, opts: &'static [Opt]) -> Self {
        self.opts = opts;
        self
    }

    /// Registers a method, getter or global function into the engine.
    pub fn register<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        self,
        engine: &mut Engine,
        func: FUNC,
    ) where
        R: Clone + Send + Sync + 'static,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    {
        assert!(
            !self.sig.contains("::"),
            "{}: a module function is set in its module",
            self.sig
        );
        self.registration::<A, N, X, R, F, FUNC>()
            .register_into_engine(engine, func);
    }

    /// Sets a function of a module (`docker::connect`); it returns a `ScriptResult`, as
    /// `Module::set_native_fn` wants.
    pub fn set_in<A: 'static, const N: usize, const X: bool, R, FUNC>(
        self,
        module: &mut Module,
        func: FUNC,
    ) where
        R: Clone + Send + Sync + 'static,
        FUNC: RhaiNativeFunc<A, N, X, R, true> + Send + Sync + 'static,
    {
        assert!(
            self.sig.contains("::"),
            "{}: only a module function is set in a module",
            self.sig
        );
        self.registration::<A, N, X, R, true, FUNC>()
            .set_into_module(module, func);
    }

    fn registration<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &self,
    ) -> FuncRegistration
    where
        R: Clone + Send + Sync + 'static,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    {
        if !KEEP_DOCS.get() {
            // The name alone, and parameters of unknown name and type, so that Rhai does not
            // write each one's type name itself (`register_into_engine`).
            let (name, getter) = name_of(self.sig);
            let reg = if getter {
                FuncRegistration::new_getter(name)
            } else {
                FuncRegistration::new(name)
            };
            return reg.with_params_info(std::iter::repeat_n("_", N));
        }
        let call = parse_sig(self.sig);
        let reg = if call.getter {
            FuncRegistration::new_getter(call.name)
        } else {
            FuncRegistration::new(call.name)
        };
        // The documented names with the registered Rust types; the return type last.
        let mut names = call
            .receiver
            .into_iter()
            .chain(call.params.iter().map(|p| p.0));
        let mut params: Vec<String> = FUNC::param_names()
            .iter()
            .map(|ty| format!("{}: {ty}", names.next().unwrap_or("?")))
            .collect();
        params.push(FUNC::return_type_name().to_string());
        let mut comments = vec![format!("{SIG}{}", self.sig)];
        if !self.text.is_empty() {
            comments.push(format!("/// {}", self.text));
        }
        comments.extend(self.opts.iter().map(|(k, t)| format!("{OPTION}{k}: {t}")));
        reg.with_params_info(params).with_comments(comments)
    }
}

/// A signature read: `e.deploy(stack: string, plan: map, opts: map) -> array`.
#[derive(Debug, PartialEq)]
pub struct Call<'a> {
    /// `docker` of `docker::connect`, `e` of `e.deploy`.
    pub module: Option<&'a str>,
    pub receiver: Option<&'a str>,
    pub name: &'a str,
    /// Each parameter's name and documented type ("" when untyped).
    pub params: Vec<(&'a str, &'a str)>,
    pub returns: Option<&'a str>,
    pub getter: bool,
}

/// Registers a global function that has no doc of its own (the stack handle's methods, one per
/// command: `engine::commands`), as `engine.register_fn` does; the parameters' types are
/// written into the metadata only where docs are kept (`documented`).
pub fn register_plain<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
    engine: &mut Engine,
    name: &str,
    func: FUNC,
) where
    R: Clone + Send + Sync + 'static,
    FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
{
    let reg = FuncRegistration::new(name);
    let reg = if KEEP_DOCS.get() {
        reg
    } else {
        reg.with_params_info(std::iter::repeat_n("_", N))
    };
    reg.register_into_engine(engine, func);
}

/// The name a signature registers and whether it is a getter, as [`parse_sig`] reads them,
/// without reading the parameters.
fn name_of(sig: &str) -> (&str, bool) {
    let head = sig.rsplit_once("->").map_or(sig, |(h, _)| h).trim();
    let (path, has_params) = match head.split_once('(') {
        Some((p, _)) => (p, true),
        None => (head, false),
    };
    if let Some((_, name)) = path.rsplit_once("::") {
        (name, false)
    } else if let Some((_, name)) = path.split_once('.') {
        (name, !has_params)
    } else {
        (path, false)
    }
}

/// Reads a signature as `Prim::new` takes it.
pub fn parse_sig(sig: &str) -> Call<'_> {
    let (head, returns) = match sig.rsplit_once("->") {
        Some((h, r)) => (h.trim(), Some(r.trim())),
        None => (sig.trim(), None),
    };
    let (path, params) = match head.split_once('(') {
        Some((p, rest)) => (p, Some(rest.trim_end().trim_end_matches(')'))),
        None => (head, None),
    };
    let (module, receiver, name) = if let Some((m, n)) = path.rsplit_once("::") {
        (Some(m), None, n)
    } else if let Some((r, n)) = path.split_once('.') {
        (None, Some(r), n)
    } else {
        (None, None, path)
    };
    let params = params
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once(':') {
                    Some((n, t)) => (n.trim(), t.trim()),
                    None => (p, ""),
                })
                .collect()
        })
        .unwrap_or_default();
    Call {
        module,
        receiver,
        name,
        params,
        returns,
        getter: head.find('(').is_none() && receiver.is_some(),
    }
}

/// Refuses an options map with a key its primitive does not declare, naming the ones it does.
pub fn check_opts(what: &str, opts: &Map, declared: &[Opt]) -> ScriptResult<()> {
    let unknown: Vec<&str> = opts
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !declared.iter().any(|(d, _)| d == k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let valid: Vec<&str> = declared.iter().map(|(k, _)| *k).collect();
    Err(usage_err(format!(
        "{what}: unknown option {}; the options are {}",
        unknown.join(", "),
        if valid.is_empty() {
            "none".to_string()
        } else {
            valid.join(", ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_read_as_scripts_write_calls() {
        let c = parse_sig("e.deploy(stack: string, plan: map, opts: map) -> array");
        assert_eq!(c.receiver, Some("e"));
        assert_eq!(c.name, "deploy");
        assert_eq!(
            c.params,
            vec![("stack", "string"), ("plan", "map"), ("opts", "map")]
        );
        assert_eq!(c.returns, Some("array"));
        assert!(!c.getter);
        let c = parse_sig("docker::connect(host: string) -> Engine");
        assert_eq!((c.module, c.name), (Some("docker"), "connect"));
        let c = parse_sig("e.host -> string");
        assert!(c.getter);
        assert!(c.params.is_empty());
        let c = parse_sig("term::json(value) -> string");
        assert_eq!(c.params, vec![("value", "")]);
        let c = parse_sig("cleanup::run(id: int)");
        assert_eq!(c.returns, None);
        for sig in [
            "e.deploy(stack: string, plan: map, opts: map) -> array",
            "docker::connect(host: string) -> Engine",
            "e.host -> string",
            "term::json(value) -> string",
            "cleanup::run(id: int)",
            "temp_dir() -> string",
        ] {
            let c = parse_sig(sig);
            assert_eq!(name_of(sig), (c.name, c.getter), "{sig}");
        }
    }

    #[test]
    fn an_unknown_option_is_refused_naming_the_valid_ones() {
        let declared: &[Opt] = &[("wait", "true"), ("timeout", "seconds")];
        let mut opts = Map::new();
        opts.insert("wait".into(), false.into());
        assert!(check_opts("e.x", &opts, declared).is_ok());
        opts.insert("wiat".into(), false.into());
        let err = check_opts("e.x", &opts, declared).unwrap_err().to_string();
        assert!(err.contains("unknown option wiat"), "{err}");
        assert!(err.contains("wait, timeout"), "{err}");
    }
}
