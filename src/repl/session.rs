//! Rhai typed at the prompt, evaluated line by line, and the parse test that lets an unfinished
//! block continue on the next line.

use std::collections::{BTreeSet, HashMap};

use rhai::{Dynamic, EvalAltResult, LexError, ParseError, ParseErrorType, Position, Scope, AST};

use super::Flow;
use crate::engine::{self, docs, CliError, Shell};

/// Rhai evaluated line by line, the way rhai's own REPL does: one scope for the variables, an
/// AST that keeps only function definitions, and the top-level imports kept as text (clearing
/// an AST's statements drops them, rhai issue #934).
pub struct RhaiSession {
    scope: Scope<'static>,
    functions: AST,
    imports: Vec<String>,
}

impl RhaiSession {
    pub fn new() -> Self {
        RhaiSession {
            scope: Scope::new(),
            functions: AST::empty(),
            imports: Vec::new(),
        }
    }

    /// Evaluates one input and prints its value when it has one.
    pub fn eval(&mut self, shell: &Shell, input: &str) -> Result<Flow, CliError> {
        match self.eval_value(shell, input) {
            Ok(value) if value.is_unit() => Ok(Flow::Continue),
            Ok(value) => {
                println!("=> {value:?}");
                Ok(Flow::Continue)
            }
            Err(e) => Err(engine::to_cli_error(&e, "input", None, Some(&shell.engine))),
        }
    }

    fn eval_value(&mut self, shell: &Shell, input: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let engine = &shell.engine;
        let line_ast = engine.compile_with_scope(&self.scope, input)?;
        let imports_ast = if self.imports.is_empty() {
            AST::empty()
        } else {
            engine.compile(self.imports.join("\n"))?
        };
        let mut program = self.functions.merge(&imports_ast).merge(&line_ast);
        let result = engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &program);
        // Functions defined by the line stay, even when its statements failed.
        program.clear_statements();
        self.functions = program;
        for import in top_level_imports(input) {
            if self.imports.contains(&import) {
                continue;
            }
            // An import that cannot be resolved would fail every later line.
            if result.is_ok() || engine.run(&import).is_ok() {
                self.imports.push(import);
            }
        }
        result
    }

    /// The type of each variable's value as scripts name it (`e` → `Engine`), for completion
    /// and `help e.deploy`.
    pub fn types(&self, engine: &rhai::Engine) -> HashMap<String, String> {
        self.scope
            .iter_raw()
            .map(|(name, _, value)| {
                let ty = engine.map_type_name(value.type_name());
                (name.to_string(), docs::simple_type(ty).to_string())
            })
            .collect()
    }

    /// The keys of each variable that holds a map (`i.ServerVersion` after `let i = e.info()`).
    pub fn map_keys(&self) -> HashMap<String, Vec<String>> {
        self.scope
            .iter_raw()
            .filter_map(|(name, _, value)| {
                let map = value.read_lock::<rhai::Map>()?;
                Some((
                    name.to_string(),
                    map.keys().map(|k| k.to_string()).collect(),
                ))
            })
            .collect()
    }

    /// Variable, function and module alias names, and the functions of imported modules
    /// (`n::parse_id` after `import "nodes" as n`), for completion.
    pub fn names(&self, engine: &rhai::Engine) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .scope
            .iter_raw()
            .map(|(name, ..)| name.to_string())
            .collect();
        names.extend(self.functions.iter_functions().map(|f| f.name.to_string()));
        for import in &self.imports {
            let Some((path, alias)) =
                import
                    .trim_end_matches(';')
                    .rsplit_once(" as ")
                    .map(|(p, a)| {
                        (
                            p.trim_start_matches("import").trim().trim_matches('"'),
                            a.trim(),
                        )
                    })
            else {
                continue;
            };
            names.insert(alias.to_string());
            let Ok(module) = engine
                .module_resolver()
                .resolve(engine, None, path, Position::NONE)
            else {
                continue;
            };
            for sig in module.gen_fn_signatures_with_mapper(std::borrow::Cow::Borrowed) {
                if let Some((name, _)) = sig.split_once('(') {
                    names.insert(format!("{alias}::{name}"));
                }
            }
        }
        names.into_iter().collect()
    }
}

/// The `import …;` statements at the top level of a script, in order.
fn top_level_imports(script: &str) -> Vec<String> {
    let mut imports = Vec::new();
    let mut depth = 0i32;
    let mut at_statement_start = true;
    let mut chars = script.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '`' | '\'' => {
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                at_statement_start = false;
            }
            '/' if chars.peek().map(|&(_, d)| d) == Some('/') => {
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().map(|&(_, d)| d) == Some('*') => {
                chars.next();
                let mut prev = ' ';
                for (_, d) in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            '{' | '(' | '[' => {
                depth += 1;
                at_statement_start = c == '{';
            }
            '}' | ')' | ']' => {
                depth -= 1;
                at_statement_start = c == '}';
            }
            ';' => at_statement_start = true,
            c if c.is_whitespace() => {}
            _ if at_statement_start && depth == 0 && is_keyword_at(script, i, "import") => {
                let end = statement_end(script, i);
                imports.push(format!(
                    "{};",
                    script[i..end].trim().trim_end_matches(';').trim()
                ));
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                at_statement_start = true;
            }
            _ => at_statement_start = false,
        }
    }
    imports
}

fn is_keyword_at(text: &str, at: usize, keyword: &str) -> bool {
    text[at..].starts_with(keyword)
        && !text[at + keyword.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

/// Where the statement starting at `from` ends: after its `;` (outside strings), or at the end.
fn statement_end(text: &str, from: usize) -> usize {
    let mut quote = None;
    for (i, c) in text[from..].char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None if c == ';' || c == '\n' => return from + i + 1,
            None => {}
        }
    }
    text.len()
}

/// Whether a parse error only says that the input has not ended yet (`fn f(x) {`, `1 +`).
pub fn is_incomplete(input: &str, err: &ParseError) -> bool {
    let (line, column) = end_position(input);
    let at_end = |pos: Position| match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => (l, c) >= (line, column),
        _ => pos.is_none(),
    };
    match err.err_type() {
        ParseErrorType::UnexpectedEOF => true,
        ParseErrorType::MissingToken(..) | ParseErrorType::MissingSymbol(..) => {
            at_end(err.position())
        }
        // A back-tick string may span lines.
        ParseErrorType::BadInput(LexError::UnterminatedString) => {
            char_at(input, err.position()) == Some('`')
        }
        _ => false,
    }
}

/// The (line, column) just past the last character that is not white space, 1-based as rhai counts.
fn end_position(input: &str) -> (usize, usize) {
    let trimmed = input.trim_end();
    let line = trimmed.split('\n').count().max(1);
    let column = trimmed.rsplit('\n').next().map_or(0, |l| l.chars().count());
    (line, column + 1)
}

fn char_at(input: &str, pos: Position) -> Option<char> {
    let (line, column) = (pos.line()?, pos.position()?);
    input.split('\n').nth(line - 1)?.chars().nth(column - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incomplete(input: &str) -> bool {
        let engine = rhai::Engine::new();
        engine
            .compile(input)
            .is_err_and(|e| is_incomplete(input, &e))
    }

    #[test]
    fn unfinished_input_asks_for_more() {
        for input in [
            "fn f(x) {",
            "1 +",
            "let a = [1, 2,",
            "foo(1,",
            "if x {\n  1",
            "let s = `abc",
            "#{ a: 1,",
        ] {
            assert!(incomplete(input), "{input:?} should be incomplete");
        }
    }

    #[test]
    fn wrong_input_is_not_incomplete() {
        for input in [
            "let = ;",
            "1 2",
            "foo(1 2)",
            "let x = ;",
            "\"abc",
            "}",
            "x.",
            "1 +;",
        ] {
            assert!(
                !incomplete(input),
                "{input:?} should be an error, not incomplete"
            );
        }
    }

    #[test]
    fn top_level_imports_are_found() {
        assert_eq!(
            top_level_imports(
                "import \"config\" as cfg; let x = cfg::context(\"\"); import \"nodes\" as n"
            ),
            ["import \"config\" as cfg;", "import \"nodes\" as n;"]
        );
        assert!(top_level_imports("fn f() { import \"x\" as y; }").is_empty());
        assert!(top_level_imports("let s = \"import x\"; important()").is_empty());
    }
}
