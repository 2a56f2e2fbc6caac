// Rebuild when a bundled script, stdlib module or node build context changes, so that the copy
// include_dir embeds is never stale.
fn main() {
    for dir in ["stdlib", "scripts", "nodes"] {
        println!("cargo:rerun-if-changed={dir}");
        for entry in walk(std::path::Path::new(dir)) {
            println!("cargo:rerun-if-changed={}", entry.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}
