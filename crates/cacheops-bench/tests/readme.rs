//! The README's "Install" lines are exactly the lines CI builds with: the `install:stock` block
//! is `tests/downstream` (crates.io SeaORM, no patch), the `install:transparent` block is
//! `examples/blog` (the transparent feature and the `[patch]`), each with its `path = …` to this
//! repository removed. And no README example hides lines (`# …`) that a reader would not see.

use std::path::Path;

fn read(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The lines of the fenced block after `<!-- {marker} -->`, by TOML section.
fn readme_block(readme: &str, marker: &str) -> Vec<(String, String)> {
    let at = readme.find(&format!("<!-- {marker} -->")).unwrap_or_else(|| panic!("no {marker} block in the README"));
    let rest = &readme[at..];
    let start = rest.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = rest[start..].find("```").expect("the block ends") + start;
    sectioned(&rest[start..end], "dependencies")
}

/// `(section, line)` for each non-empty, non-comment line; lines before any header are in `first`.
fn sectioned(toml: &str, first: &str) -> Vec<(String, String)> {
    let mut section = first.to_owned();
    let mut out = Vec::new();
    for line in toml.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = h.to_owned();
            continue;
        }
        out.push((section.clone(), line.to_owned()));
    }
    out
}

/// A manifest's dependency line as a user writes it: without `path = "…"` to this repository,
/// and `{ version = "X" }` as `"X"`.
fn as_published(line: &str) -> String {
    let mut l = line.to_owned();
    while let Some(p) = l.find(", path = \"") {
        let end = l[p + 10..].find('"').expect("closing quote") + p + 11;
        l.replace_range(p..end, "");
    }
    if let (Some(open), Some(close)) = (l.find("{ version = \""), l.rfind(" }")) {
        let inner = &l[open + 2..close];
        if !inner.contains(',') {
            let version = inner.trim_start_matches("version = ").to_owned();
            l.replace_range(open..close + 2, &version);
        }
    }
    l
}

fn manifest(rel: &str, sections: &[&str]) -> Vec<(String, String)> {
    sectioned(&read(rel), "")
        .into_iter()
        .filter(|(s, _)| sections.contains(&s.as_str()))
        .map(|(s, l)| if s == "dependencies" { (s, as_published(&l)) } else { (s, l) })
        .collect()
}

#[test]
fn stock_install_lines_are_the_downstream_crate() {
    let readme = readme_block(&read("README.md"), "install:stock");
    let downstream = manifest("tests/downstream/Cargo.toml", &["dependencies"]);
    assert!(!readme.is_empty());
    assert_eq!(readme, downstream, "README install:stock vs tests/downstream/Cargo.toml");
}

#[test]
fn transparent_install_lines_are_the_example_app() {
    let readme = readme_block(&read("README.md"), "install:transparent");
    let app = manifest("examples/blog/Cargo.toml", &["dependencies", "patch.crates-io"]);
    assert!(readme.iter().any(|(s, l)| s == "patch.crates-io" && l.starts_with("sea-orm = ")), "{readme:?}");
    for line in &readme {
        assert!(
            app.contains(line),
            "README install:transparent line {line:?} is not in examples/blog/Cargo.toml: {app:?}"
        );
    }
    let patches = |v: &[(String, String)]| v.iter().filter(|(s, _)| s == "patch.crates-io").count();
    assert_eq!(patches(&app), patches(&readme), "the README shows every [patch] line the app needs");
}

#[test]
fn as_published_drops_the_path() {
    assert_eq!(
        as_published(r#"cacheops = { version = "0.1", path = "../../crates/cacheops" }"#),
        r#"cacheops = "0.1""#
    );
    assert_eq!(
        as_published(r#"x = { version = "0.1", path = "../x", features = ["transparent"] }"#),
        r#"x = { version = "0.1", features = ["transparent"] }"#
    );
    let plain = r#"tokio = { version = "1", features = ["macros"] }"#;
    assert_eq!(as_published(plain), plain);
}

#[test]
fn readme_examples_hide_no_lines() {
    let readme = read("README.md");
    let mut in_rust = false;
    let mut blocks = 0;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_rust = !in_rust && line.starts_with("```rust");
            blocks += usize::from(in_rust);
            continue;
        }
        let hidden = line.trim_start().starts_with("# ") || line.trim() == "#";
        assert!(!(in_rust && hidden), "hidden doctest line in the README: {line:?}");
    }
    assert!(blocks >= 3, "the README's Rust examples were found ({blocks})");
}
