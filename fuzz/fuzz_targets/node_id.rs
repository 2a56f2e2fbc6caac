//! Node-id resolution: `parse_id` of `stdlib/nodes.rhai` and of `stdlib/wavelet/nodes.rhai`,
//! run in an engine built by `wsm::engine::Shell` (every primitive, the bundled stdlib, the
//! limits). Any id gives #{service, slot} with a slot from 1, or a usage error (exit code 2);
//! anything else (a script error, exit 1, or a panic) is a crash.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rhai::{Map, Scope, AST};
use wsm::engine::{to_cli_error, SearchPath, Shell};
use wsm::host::{GlobalOpts, Host};

const SCRIPT: &str = r#"
fn general(id) { import "nodes" as n; n::parse_id(id) }
fn wavelet(id) { import "wavelet/nodes" as w; w::parse_id(id) }
"#;

struct Fixture {
    shell: Shell,
    ast: AST,
    _rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let host = Host::new(rt.handle().clone(), GlobalOpts::default());
        let shell = Shell::new(host, SearchPath::from_env());
        let ast = shell.engine.compile(SCRIPT).expect("fixture compiles");
        Fixture {
            shell,
            ast,
            _rt: rt,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(id) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    for func in ["general", "wavelet"] {
        let options = rhai::CallFnOptions::new().eval_ast(false);
        let r = f.shell.engine.call_fn_with_options::<Map>(
            options,
            &mut Scope::new(),
            &f.ast,
            func,
            (id.to_string(),),
        );
        match r {
            Ok(m) => {
                let slot = m["slot"].as_int().expect("slot is a number");
                assert!(slot >= 1, "{func}({id:?}) gave slot {slot}");
                assert!(m["service"].is_string(), "{func}({id:?}) gave {m:?}");
            }
            Err(e) => {
                let err = to_cli_error(&e, "fuzz", None);
                assert_eq!(err.code, 2, "{func}({id:?}): {} ({e:?})", err.message);
            }
        }
    }
});
